/* src/safetensors/common.c: what the safetensors reader and writer share
   (st_internal.h): the dtype table, one-line error messages and
   overflow-checked tensor sizes. */
#include "safetensors/st_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [CAE_DT_F32] = {"F32", 4},  [CAE_DT_F64] = {"F64", 8},  [CAE_DT_F16] = {"F16", 2},
    [CAE_DT_BF16] = {"BF16", 2}, [CAE_DT_I64] = {"I64", 8},  [CAE_DT_I32] = {"I32", 4},
    [CAE_DT_I16] = {"I16", 2},  [CAE_DT_I8] = {"I8", 1},    [CAE_DT_U8] = {"U8", 1},
    [CAE_DT_BOOL] = {"BOOL", 1},
};
#define N_DTYPES (sizeof dtype_info / sizeof dtype_info[0])

int st_dtype_valid(cae_dtype t)
{
    /* The enum may be signed or unsigned; compare through unsigned. */
    return (unsigned)t < N_DTYPES;
}

size_t cae_dtype_size(cae_dtype t)
{
    return st_dtype_valid(t) ? dtype_info[t].size : 0;
}

const char *cae_dtype_name(cae_dtype t)
{
    return st_dtype_valid(t) ? dtype_info[t].name : "?";
}

int st_dtype_parse(const char *s, cae_dtype *out)
{
    for (size_t i = 0; i < N_DTYPES; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (cae_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* ---- error lines ---------------------------------------------------------- */

/* Copies s for an error line: control bytes become '?' so the line stays one
   line, and long strings are cut with "...". */
void st_shown(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s[i] != '\0' && i < ST_SHOWN_MAX && i + 4 < cap; i++)
        dst[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i] != '\0') {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

/* Prints "cae-cl: FILE: tensor 'NAME': MESSAGE" (or without the tensor) as
   one line with one call, so lines from several ranks do not interleave. */
/* While set (cae_st_read_header_quiet), the first error goes here instead
 * of stderr. */
static _Thread_local char *st_capture;
static _Thread_local size_t st_capture_size;

void st_capture_errors(char *buf, size_t size)
{
    st_capture = buf;
    st_capture_size = size;
}

void st_error(const char *file, const char *tensor, const char *fmt, ...)
{
    char msg[768], name[ST_SHOWN_MAX + 8];
    va_list ap;

    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        snprintf(msg, sizeof msg, "(could not format the error message)");
    va_end(ap);
    if (st_capture != NULL) {
        if (st_capture[0] == '\0') {
            if (tensor != NULL) {
                st_shown(name, sizeof name, tensor);
                snprintf(st_capture, st_capture_size, "tensor '%s': %s", name, msg);
            } else {
                snprintf(st_capture, st_capture_size, "%s", msg);
            }
        }
        return;
    }
    if (tensor != NULL) {
        st_shown(name, sizeof name, tensor);
        fprintf(stderr, "cae-cl: %s: tensor '%s': %s\n", file, name, msg);
    } else {
        fprintf(stderr, "cae-cl: %s: %s\n", file, msg);
    }
}

/* "[2, 3]" for error lines; always terminated, cut if it does not fit. */
const char *st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t at = 0;
    int n = snprintf(buf, cap, "[");
    for (int i = 0; n >= 0 && i < ndim; i++) {
        at += (size_t)n;
        if (at >= cap)
            break;
        n = snprintf(buf + at, cap - at, "%s%" PRId64, i ? ", " : "", shape[i]);
    }
    at = strlen(buf);
    if (at + 1 < cap)
        snprintf(buf + at, cap - at, "]");
    return buf;
}

/* ---- overflow-checked sizes ------------------------------------------------- */

/* Element count of a shape whose dims are all >= 0; -1 if it overflows size_t.
   A zero dim makes the count 0 whatever the other dims are. */
static int shape_numel(int ndim, const int64_t *shape, size_t *numel)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) {
            *numel = 0;
            return 0;
        }
    }
    for (int i = 0; i < ndim; i++) {
        if ((uintmax_t)shape[i] > (uintmax_t)(SIZE_MAX / n))
            return -1;
        n *= (size_t)shape[i];
    }
    *numel = n;
    return 0;
}

int st_mul_size(size_t a, size_t b, size_t *out)
{
    if (b != 0 && a > SIZE_MAX / b)
        return -1;
    *out = a * b;
    return 0;
}

/* Fills numel and nbytes of a tensor whose dtype and shape are set. */
int st_tensor_sizes(const char *file, cae_st_tensor *t)
{
    char sbuf[256];
    if (shape_numel(t->ndim, t->shape, &t->numel) != 0) {
        st_error(file, t->name, "shape %s has more elements than fit in memory",
                 st_shape_str(sbuf, sizeof sbuf, t->ndim, t->shape));
        return -1;
    }
    if (st_mul_size(t->numel, cae_dtype_size(t->dtype), &t->nbytes) != 0) {
        st_error(file, t->name, "shape %s of %s needs more bytes than fit in memory",
                 st_shape_str(sbuf, sizeof sbuf, t->ndim, t->shape), cae_dtype_name(t->dtype));
        return -1;
    }
    return 0;
}


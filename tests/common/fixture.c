/* fixture.c: the fixture readers of fixture.h. */
#include "fixture.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tu_srcdir(void)
{
    const char *s = getenv("CAE_TOP_SRCDIR");
    return s && *s ? s : ".";
}

void tu_src_path(char *out, size_t cap, const char *relpath)
{
    int n = snprintf(out, cap, "%s/%s", tu_srcdir(), relpath);
    ck_assert_msg(n > 0 && (size_t)n < cap, "path too long: %s/%s", tu_srcdir(), relpath);
}

void tu_fx_read_path(cae_st_file *f, const char *path)
{
    ck_assert_msg(cae_st_read(f, path) == 0, "cannot read %s", path);
}

void tu_fx_read(cae_st_file *f, const char *relpath)
{
    char path[4096];
    tu_src_path(path, sizeof path, relpath);
    tu_fx_read_path(f, path);
}

/* the lookup behind the getters: name formatted, presence asserted */
static const cae_st_tensor *find_v(const cae_st_file *f, const char *fmt, va_list ap)
{
    char name[256];
    const cae_st_tensor *t;
    int n = vsnprintf(name, sizeof name, fmt, ap);
    ck_assert_msg(n >= 0 && (size_t)n < sizeof name, "fixture tensor name too long: %s", fmt);
    t = cae_st_find(f, name);
    ck_assert_msg(t != NULL, "%s: fixture tensor %s missing", f->path, name);
    return t;
}

static void check_dtype(const cae_st_tensor *t, cae_dtype dt)
{
    ck_assert_msg(t->dtype == dt, "fixture tensor %s: dtype %s, want %s", t->name,
                  cae_dtype_name(t->dtype), cae_dtype_name(dt));
}

static void check_numel(const cae_st_tensor *t, size_t n)
{
    ck_assert_msg(t->numel == n, "fixture tensor %s: %zu elements, want %zu", t->name, t->numel, n);
}

/* t = the tensor named by fmt and the function's variadic arguments */
#define FIND_FORMATTED(t, f, fmt)                                      \
    do {                                                               \
        va_list ap_;                                                   \
        va_start(ap_, fmt);                                            \
        (t) = find_v(f, fmt, ap_);                                     \
        va_end(ap_);                                                   \
    } while (0)

const cae_st_tensor *tu_fx_find(const cae_st_file *f, const char *fmt, ...)
{
    const cae_st_tensor *t;
    FIND_FORMATTED(t, f, fmt);
    return t;
}

const cae_st_tensor *tu_fx_get(const cae_st_file *f, cae_dtype dt, const char *fmt, ...)
{
    const cae_st_tensor *t;
    FIND_FORMATTED(t, f, fmt);
    check_dtype(t, dt);
    return t;
}

const cae_st_tensor *tu_fx_get_n(const cae_st_file *f, cae_dtype dt, size_t n, const char *fmt, ...)
{
    const cae_st_tensor *t;
    FIND_FORMATTED(t, f, fmt);
    check_dtype(t, dt);
    check_numel(t, n);
    return t;
}

const float *tu_fx_f32s(const cae_st_file *f, size_t n, const char *fmt, ...)
{
    const cae_st_tensor *t;
    FIND_FORMATTED(t, f, fmt);
    check_dtype(t, CAE_DT_F32);
    check_numel(t, n);
    ck_assert_msg((uintptr_t)t->data % sizeof(float) == 0,
                  "fixture tensor %s: data not 4-byte aligned", t->name);
    return t->data;
}

int tu_fx_meta_int(const cae_st_file *f, const char *key)
{
    const char *v = cae_st_meta(f, key);
    ck_assert_msg(v != NULL, "%s: fixture metadata %s missing", f->path, key);
    return atoi(v);
}

/* element i of t, of dtype dt and size bytes, into out */
static void element(const cae_st_tensor *t, cae_dtype dt, size_t i, void *out, size_t size)
{
    check_dtype(t, dt);
    ck_assert_msg(i < t->numel, "fixture tensor %s: element %zu of %zu", t->name, i, t->numel);
    memcpy(out, (const char *)t->data + i * size, size);
}

int32_t tu_fx_i32(const cae_st_tensor *t, size_t i)
{
    int32_t v;
    element(t, CAE_DT_I32, i, &v, sizeof v);
    return v;
}

float tu_fx_f32(const cae_st_tensor *t, size_t i)
{
    float v;
    element(t, CAE_DT_F32, i, &v, sizeof v);
    return v;
}

double tu_fx_f64(const cae_st_tensor *t, size_t i)
{
    double v;
    element(t, CAE_DT_F64, i, &v, sizeof v);
    return v;
}

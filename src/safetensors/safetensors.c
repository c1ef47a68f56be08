/* src/safetensors.c: reads and writes safetensors files (see safetensors.h).

   jansson parses and prints the JSON header; this file owns the length
   prefix, every check on the header's contents, the bookkeeping of names,
   shapes and offsets, and the atomic write. A file is read whole into memory
   and tensors point into that copy. */
#include "safetensors/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A header this large is corruption, not a checkpoint: refuse before parsing. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)
/* Longest name or string echoed into an error line, in bytes. */
#define ST_SHOWN_MAX 200
/* Error lines about the writer have no file yet; they name it like this. */
#define ST_WRITER "safetensors writer"

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

static int dtype_valid(cae_dtype t)
{
    /* The enum may be signed or unsigned; compare through unsigned. */
    return (unsigned)t < N_DTYPES;
}

size_t cae_dtype_size(cae_dtype t)
{
    return dtype_valid(t) ? dtype_info[t].size : 0;
}

const char *cae_dtype_name(cae_dtype t)
{
    return dtype_valid(t) ? dtype_info[t].name : "?";
}

static int dtype_parse(const char *s, cae_dtype *out)
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
static void shown(char *dst, size_t cap, const char *s)
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

static void st_error(const char *file, const char *tensor, const char *fmt, ...)
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
                shown(name, sizeof name, tensor);
                snprintf(st_capture, st_capture_size, "tensor '%s': %s", name, msg);
            } else {
                snprintf(st_capture, st_capture_size, "%s", msg);
            }
        }
        return;
    }
    if (tensor != NULL) {
        shown(name, sizeof name, tensor);
        fprintf(stderr, "cae-cl: %s: tensor '%s': %s\n", file, name, msg);
    } else {
        fprintf(stderr, "cae-cl: %s: %s\n", file, msg);
    }
}

/* "[2, 3]" for error lines; always terminated, cut if it does not fit. */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
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

static int mul_size(size_t a, size_t b, size_t *out)
{
    if (b != 0 && a > SIZE_MAX / b)
        return -1;
    *out = a * b;
    return 0;
}

/* Fills numel and nbytes of a tensor whose dtype and shape are set. */
static int tensor_sizes(const char *file, cae_st_tensor *t)
{
    char sbuf[256];
    if (shape_numel(t->ndim, t->shape, &t->numel) != 0) {
        st_error(file, t->name, "shape %s has more elements than fit in memory",
                 shape_str(sbuf, sizeof sbuf, t->ndim, t->shape));
        return -1;
    }
    if (mul_size(t->numel, cae_dtype_size(t->dtype), &t->nbytes) != 0) {
        st_error(file, t->name, "shape %s of %s needs more bytes than fit in memory",
                 shape_str(sbuf, sizeof sbuf, t->ndim, t->shape), cae_dtype_name(t->dtype));
        return -1;
    }
    return 0;
}

/* ---- reading -------------------------------------------------------------- */

static int read_exact(int fd, const char *path, unsigned char *buf, size_t n, size_t size);

/* The whole file, or with header_only its first 8 + header-length bytes
 * (*out_size is still the file's size: the header is checked against it). */
static int read_file(const char *path, int header_only, unsigned char **out, size_t *out_size)
{
    struct stat sb;
    unsigned char *buf = NULL;
    size_t size, want;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        st_error(path, NULL, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0) {
        st_error(path, NULL, "cannot stat: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st_error(path, NULL, "not a regular file");
        goto fail;
    }
    if (sb.st_size < 0 || (uintmax_t)sb.st_size > (uintmax_t)SIZE_MAX - 1) {
        st_error(path, NULL, "file too large to hold in memory");
        goto fail;
    }
    size = (size_t)sb.st_size;
    want = size;
    if (header_only && size >= 8) {
        unsigned char len8[8];
        uint64_t hlen = 0;
        if (read_exact(fd, path, len8, 8, size) != 0)
            goto fail;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | len8[i];
        /* an absurd length is refused by the caller, which sees the 8 bytes */
        want = hlen <= size - 8 && hlen <= ST_MAX_HEADER ? 8 + (size_t)hlen : 8;
        if (lseek(fd, 0, SEEK_SET) != 0) {
            st_error(path, NULL, "cannot seek: %s", strerror(errno));
            goto fail;
        }
    }
    /* One spare byte so that an empty file still gets a real buffer. */
    buf = malloc(want + 1);
    if (buf == NULL) {
        st_error(path, NULL, "out of memory reading %zu bytes", want);
        goto fail;
    }
    if (read_exact(fd, path, buf, want, size) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        st_error(path, NULL, "cannot close: %s", strerror(errno));
        goto fail;
    }
    *out = buf;
    *out_size = size;
    return 0;
fail:
    if (fd >= 0)
        close(fd);   /* already failing; a close error would add nothing */
    free(buf);
    return -1;
}

/* n bytes from fd's position into buf; size is the file's size (messages) */
static int read_exact(int fd, const char *path, unsigned char *buf, size_t n, size_t size)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st_error(path, NULL, "cannot read: %s", strerror(errno));
            return -1;
        }
        if (r == 0) {
            st_error(path, NULL, "file shrank to %zu bytes while being read (was %zu)", got, size);
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Where a tensor's bytes lie in the data area, for the overlap check. */
struct st_span {
    size_t begin, end, index;
};

static int span_cmp(const void *pa, const void *pb)
{
    const struct st_span *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    /* qsort is not stable: break ties by header order so errors name the later tensor. */
    return a->index < b->index ? -1 : a->index > b->index;
}

static int parse_shape(const char *file, cae_st_tensor *t, json_t *js)
{
    size_t nd;
    if (!json_is_array(js)) {
        st_error(file, t->name, "shape is not an array");
        return -1;
    }
    nd = json_array_size(js);
    if (nd > CAE_ST_MAX_DIMS) {
        st_error(file, t->name, "shape has %zu dims, at most %d are supported", nd, CAE_ST_MAX_DIMS);
        return -1;
    }
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            st_error(file, t->name, "shape[%zu] is not a non-negative integer", i);
            return -1;
        }
        t->shape[i] = (int64_t)json_integer_value(d);
    }
    t->ndim = (int)nd;
    return tensor_sizes(file, t);
}

static int parse_offsets(const char *file, const cae_st_tensor *t, json_t *jo, size_t data_size,
                         struct st_span *span)
{
    json_int_t b, e;
    char sbuf[256];
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1))) {
        st_error(file, t->name, "data_offsets is not an array of two integers");
        return -1;
    }
    b = json_integer_value(json_array_get(jo, 0));
    e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < 0) {
        st_error(file, t->name, "data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                 ") has a negative offset", b, e);
        return -1;
    }
    if (b > e) {
        st_error(file, t->name, "data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                 ") begins after it ends", b, e);
        return -1;
    }
    if ((uintmax_t)e > (uintmax_t)data_size) {
        st_error(file, t->name, "data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                 ") outside the data area (%zu bytes)", b, e, data_size);
        return -1;
    }
    if ((size_t)(e - b) != t->nbytes) {
        st_error(file, t->name, "data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                 ") hold %zu bytes but shape %s of %s needs %zu (%zu elements x %zu bytes)",
                 b, e, (size_t)(e - b), shape_str(sbuf, sizeof sbuf, t->ndim, t->shape),
                 cae_dtype_name(t->dtype), t->nbytes, t->numel, cae_dtype_size(t->dtype));
        return -1;
    }
    span->begin = (size_t)b;
    span->end = (size_t)e;
    return 0;
}

/* Checks one header entry; t->name is already set. */
static int parse_entry(const char *file, cae_st_tensor *t, json_t *val, size_t data_size,
                       struct st_span *span)
{
    json_t *jd, *js, *jo;
    char dbuf[ST_SHOWN_MAX + 8];

    if (!json_is_object(val)) {
        st_error(file, t->name, "entry is not an object");
        return -1;
    }
    jd = json_object_get(val, "dtype");
    js = json_object_get(val, "shape");
    jo = json_object_get(val, "data_offsets");
    if (jd == NULL || js == NULL || jo == NULL) {
        st_error(file, t->name, "entry lacks %s", jd == NULL ? "dtype" : js == NULL ? "shape" : "data_offsets");
        return -1;
    }
    if (!json_is_string(jd)) {
        st_error(file, t->name, "dtype is not a string");
        return -1;
    }
    if (dtype_parse(json_string_value(jd), &t->dtype) != 0) {
        shown(dbuf, sizeof dbuf, json_string_value(jd));
        st_error(file, t->name, "unknown dtype '%s'", dbuf);
        return -1;
    }
    if (parse_shape(file, t, js) != 0)
        return -1;
    return parse_offsets(file, t, jo, data_size, span);
}

static int parse_meta(cae_st_file *g, json_t *meta)
{
    const char *key;
    json_t *v;
    size_t n = json_object_size(meta);
    char kbuf[ST_SHOWN_MAX + 8];

    if (!json_is_object(meta)) {
        st_error(g->path, NULL, "__metadata__ is not an object");
        return -1;
    }
    if (n == 0)
        return 0;
    g->meta_keys = calloc(n, sizeof *g->meta_keys);
    g->meta_values = calloc(n, sizeof *g->meta_values);
    if (g->meta_keys == NULL || g->meta_values == NULL) {
        st_error(g->path, NULL, "out of memory for %zu metadata entries", n);
        return -1;
    }
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v)) {
            shown(kbuf, sizeof kbuf, key);
            st_error(g->path, NULL, "__metadata__ value of '%s' is not a string", kbuf);
            return -1;
        }
        /* Counted before the NULL check so cae_st_free releases both. */
        g->meta_keys[g->n_meta] = strdup(key);
        g->meta_values[g->n_meta] = strdup(json_string_value(v));
        g->n_meta++;
        if (g->meta_keys[g->n_meta - 1] == NULL || g->meta_values[g->n_meta - 1] == NULL) {
            st_error(g->path, NULL, "out of memory for metadata");
            return -1;
        }
    }
    return 0;
}

/* Refuses two tensors whose bytes overlap. Empty tensors own no bytes. */
static int check_overlaps(const cae_st_file *g, struct st_span *spans)
{
    const struct st_span *far = NULL;   /* the span reaching furthest so far */
    char other[ST_SHOWN_MAX + 8];

    qsort(spans, g->n_tensors, sizeof *spans, span_cmp);
    for (size_t i = 0; i < g->n_tensors; i++) {
        const struct st_span *s = &spans[i];
        if (s->begin == s->end)
            continue;
        if (far != NULL && s->begin < far->end) {
            shown(other, sizeof other, g->tensors[far->index].name);
            st_error(g->path, g->tensors[s->index].name,
                     "data_offsets [%zu, %zu) overlap tensor '%s' at [%zu, %zu)", s->begin, s->end, other,
                     far->begin, far->end);
            return -1;
        }
        if (far == NULL || s->end > far->end)
            far = s;
    }
    return 0;
}

static int parse_header(cae_st_file *g, json_t *root, size_t data_start)
{
    size_t data_size = g->size - data_start;
    json_t *meta = json_object_get(root, "__metadata__");
    size_t n = json_object_size(root) - (meta != NULL);
    struct st_span *spans = NULL;
    const char *key;
    json_t *val;
    int rc = -1;

    if (meta != NULL && parse_meta(g, meta) != 0)
        return -1;
    if (n == 0)
        return 0;
    g->tensors = calloc(n, sizeof *g->tensors);
    spans = calloc(n, sizeof *spans);
    if (g->tensors == NULL || spans == NULL) {
        st_error(g->path, NULL, "out of memory for %zu tensors", n);
        goto out;
    }
    json_object_foreach(root, key, val) {
        cae_st_tensor *t = &g->tensors[g->n_tensors];
        if (strcmp(key, "__metadata__") == 0)
            continue;
        t->name = strdup(key);
        if (t->name == NULL) {
            st_error(g->path, key, "out of memory");
            goto out;
        }
        g->n_tensors++;   /* from here on cae_st_free owns the name */
        spans[g->n_tensors - 1].index = g->n_tensors - 1;
        if (parse_entry(g->path, t, val, data_size, &spans[g->n_tensors - 1]) != 0)
            goto out;
        t->data = g->bytes + data_start + spans[g->n_tensors - 1].begin;
    }
    rc = check_overlaps(g, spans);
out:
    free(spans);
    return rc;
}

/* jansson reports a repeated key by the offset just past its closing quote.
   Walks back to the opening quote (one not escaped by an odd run of
   backslashes) and lets jansson decode the string. NULL if that fails. */
static char *repeated_key(const char *hdr, size_t len, int pos)
{
    json_error_t err;
    json_t *s;
    char *key = NULL;

    if (pos < 2 || (size_t)pos > len || hdr[pos - 1] != '"')
        return NULL;
    for (size_t q = (size_t)pos - 1; q-- > 0;) {
        size_t slashes = 0;
        if (hdr[q] != '"')
            continue;
        while (slashes < q && hdr[q - slashes - 1] == '\\')
            slashes++;
        if (slashes % 2 != 0)
            continue;
        s = json_loadb(hdr + q, (size_t)pos - q, JSON_DECODE_ANY, &err);
        if (s != NULL && json_is_string(s))
            key = strdup(json_string_value(s));
        json_decref(s);
        return key;
    }
    return NULL;
}

static void report_json_error(const cae_st_file *g, const char *hdr, size_t len, const json_error_t *err)
{
    char kbuf[ST_SHOWN_MAX + 8], tbuf[ST_SHOWN_MAX + 8];
    char *key = NULL;
    json_error_t err2;
    json_t *loose;

    if (json_error_code(err) == json_error_duplicate_key)
        key = repeated_key(hdr, len, err->position);
    if (key == NULL) {
        /* jansson quotes the header near the error, raw bytes and all. */
        shown(tbuf, sizeof tbuf, err->text);
        st_error(g->path, NULL, "header is not valid JSON: %s (line %d, column %d)", tbuf, err->line,
                 err->column);
        return;
    }
    /* Parsed again letting the last copy win, to tell a repeated tensor name
       from a key repeated inside an entry or __metadata__. */
    loose = json_loadb(hdr, len, 0, &err2);
    if (loose != NULL && json_is_object(loose) && json_object_get(loose, key) != NULL &&
        strcmp(key, "__metadata__") != 0) {
        st_error(g->path, key, "name appears more than once in the header");
    } else {
        shown(kbuf, sizeof kbuf, key);
        st_error(g->path, NULL, "header repeats the key '%s' within one object", kbuf);
    }
    json_decref(loose);
    free(key);
}

static int st_load(cae_st_file *f, const char *path, int header_only)
{
    cae_st_file g;
    json_error_t jerr;
    json_t *root;
    uint64_t hlen = 0;
    const char *hdr;
    int rc;

    memset(&g, 0, sizeof g);
    if (f == NULL || path == NULL) {
        st_error(path ? path : "(null)", NULL, "cae_st_read called with a NULL argument");
        return -1;
    }
    memset(f, 0, sizeof *f);
    g.path = strdup(path);
    if (g.path == NULL) {
        st_error(path, NULL, "out of memory");
        return -1;
    }
    if (read_file(path, header_only, &g.bytes, &g.size) != 0)
        goto fail;
    if (g.size < 8) {
        st_error(path, NULL, "file is %zu bytes, shorter than the 8-byte header length", g.size);
        goto fail;
    }
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | g.bytes[i];
    if (hlen == 0) {
        st_error(path, NULL, "header length is 0");
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        st_error(path, NULL, "header length %" PRIu64 " is absurd (over 100 MiB)", hlen);
        goto fail;
    }
    if (hlen > g.size - 8) {
        st_error(path, NULL, "header length %" PRIu64 " is larger than the %zu bytes after it", hlen,
                 g.size - 8);
        goto fail;
    }
    hdr = (const char *)g.bytes + 8;
    root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        report_json_error(&g, hdr, (size_t)hlen, &jerr);
        goto fail;
    }
    if (!json_is_object(root)) {
        st_error(path, NULL, "header is not a JSON object");
        json_decref(root);
        goto fail;
    }
    rc = parse_header(&g, root, 8 + (size_t)hlen);
    json_decref(root);
    if (rc != 0)
        goto fail;
    if (header_only) /* the data was not read */
        for (size_t i = 0; i < g.n_tensors; i++)
            g.tensors[i].data = NULL;
    *f = g;
    return 0;
fail:
    cae_st_free(&g);
    return -1;
}

int cae_st_read(cae_st_file *f, const char *path)
{
    return st_load(f, path, 0);
}

int cae_st_read_header(cae_st_file *f, const char *path)
{
    return st_load(f, path, 1);
}

int cae_st_read_header_quiet(cae_st_file *f, const char *path, char *why, size_t why_size)
{
    int rc;
    if (why == NULL || why_size == 0)
        return st_load(f, path, 1);
    why[0] = '\0';
    st_capture = why;
    st_capture_size = why_size;
    rc = st_load(f, path, 1);
    st_capture = NULL;
    return rc;
}

void cae_st_free(cae_st_file *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const cae_st_tensor *cae_st_find(const cae_st_file *f, const char *name)
{
    if (f == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *cae_st_meta(const cae_st_file *f, const char *key)
{
    if (f == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

const cae_st_tensor *cae_st_expect(const cae_st_file *f, const char *name, cae_dtype dtype, int ndim,
                                   const int64_t *shape)
{
    const char *file = (f != NULL && f->path != NULL) ? f->path : "(no file)";
    const cae_st_tensor *t;
    char have[256], want[256];

    if (f == NULL || name == NULL || ndim < 0 || ndim > CAE_ST_MAX_DIMS || (ndim > 0 && shape == NULL) ||
        !dtype_valid(dtype)) {
        st_error(file, name, "cae_st_expect called with an invalid argument (ndim %d)", ndim);
        return NULL;
    }
    t = cae_st_find(f, name);
    if (t == NULL) {
        st_error(file, name, "not found (the file has %zu tensors)", f->n_tensors);
        return NULL;
    }
    if (t->dtype != dtype) {
        st_error(file, name, "dtype %s, expected %s", cae_dtype_name(t->dtype), cae_dtype_name(dtype));
        return NULL;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        st_error(file, name, "shape %s, expected %s", shape_str(have, sizeof have, t->ndim, t->shape),
                 shape_str(want, sizeof want, ndim, shape));
        return NULL;
    }
    return t;
}

/* ---- writing -------------------------------------------------------------- */

struct cae_st_writer {
    cae_st_tensor *t;        /* data points to the writer's own copy */
    size_t n, cap;
    size_t data_size;        /* sum of nbytes so far */
    struct st_meta {
        char *key, *value;
    } *meta;
    size_t n_meta, cap_meta;
};

cae_st_writer *cae_st_writer_new(void)
{
    cae_st_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        st_error(ST_WRITER, NULL, "out of memory");
    return w;
}

/* jansson refuses strings that are not UTF-8; so would any reader. */
static int utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* Room for one more element: ARR itself, or ARR moved to twice the
   capacity when full (CAP updated). NULL when out of memory, ARR intact. */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    size_t want;
    void *p;
    if (n < *cap)
        return arr;
    want = *cap ? *cap * 2 : 16;
    if (want < *cap || want > SIZE_MAX / elem)
        return NULL;
    p = realloc(arr, want * elem);
    if (p != NULL)
        *cap = want;
    return p;
}

int cae_st_writer_add(cae_st_writer *w, const char *name, cae_dtype dtype, int ndim, const int64_t *shape,
                      const void *data)
{
    cae_st_tensor t;
    void *grown;

    if (w == NULL || name == NULL) {
        st_error(ST_WRITER, name, "cae_st_writer_add called with a NULL writer or name");
        return -1;
    }
    memset(&t, 0, sizeof t);
    if (strcmp(name, "__metadata__") == 0 || !utf8_ok(name)) {
        st_error(ST_WRITER, name, "not a usable tensor name");
        return -1;
    }
    if (!dtype_valid(dtype)) {
        st_error(ST_WRITER, name, "invalid dtype %d", (int)dtype);
        return -1;
    }
    if (ndim < 0 || ndim > CAE_ST_MAX_DIMS || (ndim > 0 && shape == NULL)) {
        st_error(ST_WRITER, name, "ndim %d is invalid (0 to %d, with a shape)", ndim, CAE_ST_MAX_DIMS);
        return -1;
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            st_error(ST_WRITER, name, "shape[%d] is %" PRId64 ", below 0", i, shape[i]);
            return -1;
        }
        t.shape[i] = shape[i];
    }
    t.ndim = ndim;
    t.dtype = dtype;
    t.name = (char *)name;   /* borrowed for error lines until copied below */
    if (tensor_sizes(ST_WRITER, &t) != 0)
        return -1;
    /* Offsets travel as JSON integers (long long). */
    if (t.nbytes > SIZE_MAX - w->data_size || (uintmax_t)(w->data_size + t.nbytes) > (uintmax_t)LLONG_MAX) {
        st_error(ST_WRITER, name, "%zu more bytes would make the data area too large", t.nbytes);
        return -1;
    }
    if (data == NULL && t.nbytes > 0) {
        st_error(ST_WRITER, name, "data is NULL but the tensor holds %zu bytes", t.nbytes);
        return -1;
    }
    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->t[i].name, name) == 0) {
            st_error(ST_WRITER, name, "added twice");
            return -1;
        }
    }
    grown = grow(w->t, &w->cap, w->n, sizeof *w->t);
    if (grown == NULL)
        goto oom;
    w->t = grown;
    t.name = strdup(name);
    if (t.name == NULL)
        goto oom;
    if (t.nbytes > 0) {
        void *copy = malloc(t.nbytes);
        if (copy == NULL) {
            free(t.name);
            goto oom;
        }
        memcpy(copy, data, t.nbytes);
        t.data = copy;
    }
    w->t[w->n++] = t;
    w->data_size += t.nbytes;
    return 0;
oom:
    st_error(ST_WRITER, name, "out of memory copying %zu bytes", t.nbytes);
    return -1;
}

int cae_st_writer_meta(cae_st_writer *w, const char *key, const char *value)
{
    char kbuf[ST_SHOWN_MAX + 8];
    char *k, *v;
    void *grown;

    if (w == NULL || key == NULL || value == NULL) {
        st_error(ST_WRITER, NULL, "cae_st_writer_meta called with a NULL argument");
        return -1;
    }
    shown(kbuf, sizeof kbuf, key);
    if (!utf8_ok(key) || !utf8_ok(value)) {
        st_error(ST_WRITER, NULL, "metadata '%s': key or value is not UTF-8", kbuf);
        return -1;
    }
    for (size_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            st_error(ST_WRITER, NULL, "metadata '%s' set twice", kbuf);
            return -1;
        }
    }
    grown = grow(w->meta, &w->cap_meta, w->n_meta, sizeof *w->meta);
    if (grown == NULL)
        goto oom;
    w->meta = grown;
    k = strdup(key);
    v = strdup(value);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        goto oom;
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta].value = v;
    w->n_meta++;
    return 0;
oom:
    st_error(ST_WRITER, NULL, "metadata '%s': out of memory", kbuf);
    return -1;
}

void cae_st_writer_free(cae_st_writer *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free((void *)w->t[i].data);
    }
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->t);
    free(w->meta);
    free(w);
}

/* Sets obj[key] = v, taking v (NULL allowed: then it fails). */
static int put(json_t *obj, const char *key, json_t *v)
{
    return json_object_set_new(obj, key, v);
}

static json_t *entry_json(const cae_st_tensor *t, size_t begin)
{
    json_t *e = json_object(), *shape = json_array(), *offs = json_array();
    int bad = e == NULL || shape == NULL || offs == NULL;

    for (int i = 0; !bad && i < t->ndim; i++)
        bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[i])) != 0;
    if (!bad)
        bad = json_array_append_new(offs, json_integer((json_int_t)begin)) != 0 ||
              json_array_append_new(offs, json_integer((json_int_t)(begin + t->nbytes))) != 0;
    if (!bad)
        bad = put(e, "dtype", json_string(cae_dtype_name(t->dtype))) != 0;
    /* put() takes its value even on failure, so clear the pointer first. */
    if (!bad) {
        json_t *s = shape;
        shape = NULL;
        bad = put(e, "shape", s) != 0;
    }
    if (!bad) {
        json_t *o = offs;
        offs = NULL;
        bad = put(e, "data_offsets", o) != 0;
    }
    json_decref(shape);
    json_decref(offs);
    if (bad) {
        json_decref(e);
        return NULL;
    }
    return e;
}

/* The header text padded with spaces so 8 + its length is a multiple of 8. */
static char *header_text(const cae_st_writer *w, const char *path, size_t *len_out)
{
    json_t *root = json_object(), *meta = NULL;
    char *text = NULL, *padded = NULL;
    size_t off = 0, len, plen;
    int bad = root == NULL;

    if (!bad && w->n_meta > 0) {
        /* The official library writes __metadata__ first; so do we. From
           here on root owns meta (put() fails on NULL). */
        meta = json_object();
        bad = put(root, "__metadata__", meta) != 0;
        for (size_t i = 0; !bad && i < w->n_meta; i++)
            bad = put(meta, w->meta[i].key, json_string(w->meta[i].value)) != 0;
    }
    for (size_t i = 0; !bad && i < w->n; i++) {
        bad = put(root, w->t[i].name, entry_json(&w->t[i], off)) != 0;
        off += w->t[i].nbytes;
    }
    if (!bad)
        text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (text == NULL) {
        st_error(path, NULL, "cannot build the JSON header (out of memory?)");
        return NULL;
    }
    len = strlen(text);
    plen = (len + 7) / 8 * 8;
    if ((uint64_t)plen > ST_MAX_HEADER) {
        st_error(path, NULL, "header of %zu bytes is over the 100 MiB readers accept", plen);
        free(text);
        return NULL;
    }
    padded = malloc(plen + 1);
    if (padded == NULL) {
        st_error(path, NULL, "out of memory for a %zu-byte header", plen);
        free(text);
        return NULL;
    }
    memcpy(padded, text, len);
    memset(padded + len, ' ', plen - len);
    padded[plen] = '\0';
    free(text);
    *len_out = plen;
    return padded;
}

/* Cleans up a failed write and prints its one line; always returns -1. */
static int write_fail(const char *path, const char *tmp, FILE *fp, const char *what, int err)
{
    char extra[512] = "";
    if (fp != NULL)
        fclose(fp);   /* already failing; the temporary file goes next */
    if (unlink(tmp) != 0 && errno != ENOENT)
        snprintf(extra, sizeof extra, "; could not remove %s: %s", tmp, strerror(errno));
    st_error(path, NULL, "%s: %s%s", what, err ? strerror(err) : "short write", extra);
    return -1;
}

/* Fault injection for the crash-safety test: with
 * CAE_CL_FAULT_WRITE_PAUSE_MS=N the writer stops for N ms halfway through
 * the tensor data (what it wrote so far flushed to the temporary file), so
 * a kill is sure to land inside a checkpoint write. */
static void fault_pause_mid_write(FILE *fp)
{
    const char *env = getenv("CAE_CL_FAULT_WRITE_PAUSE_MS");
    long ms = env ? strtol(env, NULL, 10) : 0;
    if (ms <= 0)
        return;
    fflush(fp);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* fsync of the folder makes the rename itself durable. Filesystems that
   cannot sync a folder say EINVAL; that is not an error. */
static int sync_folder(const char *path)
{
    char *dir = strdup(path), *slash;
    const char *d = ".";
    int fd, rc = 0;

    if (dir == NULL) {
        st_error(path, NULL, "written, but out of memory syncing its folder");
        return -1;
    }
    slash = strrchr(dir, '/');
    if (slash != NULL) {
        slash[slash == dir ? 1 : 0] = '\0';
        d = dir;
    }
    fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        st_error(path, NULL, "written, but cannot open folder %s to sync it: %s", d, strerror(errno));
        free(dir);
        return -1;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        st_error(path, NULL, "written, but syncing folder %s failed: %s", d, strerror(errno));
        rc = -1;
    }
    if (close(fd) != 0 && rc == 0) {
        st_error(path, NULL, "written, but closing folder %s failed: %s", d, strerror(errno));
        rc = -1;
    }
    free(dir);
    return rc;
}

int cae_st_writer_write(cae_st_writer *w, const char *path)
{
    unsigned char len8[8];
    char *hdr, *tmp;
    size_t hlen = 0, tcap;
    FILE *fp;
    int fd, rc = -1;

    if (w == NULL || path == NULL) {
        st_error(path ? path : "(null)", NULL, "cae_st_writer_write called with a NULL argument");
        return -1;
    }
    hdr = header_text(w, path, &hlen);
    if (hdr == NULL)
        return -1;
    tcap = strlen(path) + 32;
    tmp = malloc(tcap);
    if (tmp == NULL) {
        st_error(path, NULL, "out of memory");
        free(hdr);
        return -1;
    }
    if (snprintf(tmp, tcap, "%s.tmp.%ld", path, (long)getpid()) < 0) {
        st_error(path, NULL, "cannot format the temporary file name");
        goto out;
    }
    /* Plain "w", not "x": a crash can leave PATH.tmp.<pid> behind, and in
       containers the next run often gets the same pid. */
    fp = fopen(tmp, "wb");
    if (fp == NULL) {
        st_error(path, NULL, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    errno = 0;
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr, 1, hlen, fp) != hlen) {
        write_fail(path, tmp, fp, "cannot write the header", errno);
        goto out;
    }
    for (size_t i = 0; i < w->n; i++) {
        if (i == w->n / 2)
            fault_pause_mid_write(fp);
        errno = 0;
        if (w->t[i].nbytes > 0 && fwrite(w->t[i].data, 1, w->t[i].nbytes, fp) != w->t[i].nbytes) {
            write_fail(path, tmp, fp, "cannot write tensor data", errno);
            goto out;
        }
    }
    errno = 0;
    if (fflush(fp) != 0) {
        write_fail(path, tmp, fp, "cannot write", errno);
        goto out;
    }
    fd = fileno(fp);
    if (fd < 0 || fsync(fd) != 0) {
        write_fail(path, tmp, fp, "cannot sync the temporary file", errno);
        goto out;
    }
    if (fclose(fp) != 0) {
        write_fail(path, tmp, NULL, "cannot close the temporary file", errno);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        write_fail(path, tmp, NULL, "cannot rename the temporary file over it", errno);
        goto out;
    }
    rc = sync_folder(path);
out:
    free(tmp);
    free(hdr);
    return rc;
}

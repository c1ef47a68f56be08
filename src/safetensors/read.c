/* src/safetensors/read.c: reads safetensors files (see safetensors.h).

   jansson parses the JSON header; this file owns the length prefix, every
   check on the header's contents and the bookkeeping of names, shapes and
   offsets. A file is read whole into memory and tensors point into that
   copy. */
#include "safetensors/st_internal.h"
#include "runtime/files.h"

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

static int read_exact(int fd, const char *path, unsigned char *buf, size_t n, size_t size);

/* The whole file, or with header_only its first 8 + header-length bytes
 * (*out_size is still the file's size: the header is checked against it). */
static int read_file(const char *path, int header_only, unsigned char **out, size_t *out_size)
{
    struct stat sb;
    unsigned char *buf = NULL;
    size_t size, want;
    char why[256];
    int fd = cae_open_regular(path, &sb, why, sizeof why);

    if (fd < 0) {
        st_error(path, NULL, "%s", why);
        return -1;
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

/* The first 8 bytes of what torch.save writes: a zip archive (PyTorch 1.6
 * on) or a pickle's PROTO opcode (0x80, protocol 2 to 5). A safetensors file
 * may begin the same way, so this is asked only of a header length that
 * cannot be right. */
static int is_pytorch_file(const unsigned char *b)
{
    static const unsigned char zip[4] = {'P', 'K', 3, 4};
    return memcmp(b, zip, 4) == 0 || (b[0] == 0x80 && b[1] >= 2 && b[1] <= 5);
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
    return st_tensor_sizes(file, t);
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
                 b, e, (size_t)(e - b), st_shape_str(sbuf, sizeof sbuf, t->ndim, t->shape),
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
    if (st_dtype_parse(json_string_value(jd), &t->dtype) != 0) {
        st_shown(dbuf, sizeof dbuf, json_string_value(jd));
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
            st_shown(kbuf, sizeof kbuf, key);
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
            st_shown(other, sizeof other, g->tensors[far->index].name);
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
        st_shown(tbuf, sizeof tbuf, err->text);
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
        st_shown(kbuf, sizeof kbuf, key);
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
    if ((hlen > ST_MAX_HEADER || hlen > g.size - 8) && is_pytorch_file(g.bytes)) {
        st_error(path, NULL, "a PyTorch checkpoint, not safetensors: convert it with "
                             "cae-cl-convert-checkpoint to-safetensors");
        goto fail;
    }
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
    st_capture_errors(why, why_size);
    rc = st_load(f, path, 1);
    st_capture_errors(NULL, 0);
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
        !st_dtype_valid(dtype)) {
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
        st_error(file, name, "shape %s, expected %s", st_shape_str(have, sizeof have, t->ndim, t->shape),
                 st_shape_str(want, sizeof want, ndim, shape));
        return NULL;
    }
    return t;
}


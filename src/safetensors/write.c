/* src/safetensors/write.c: writes safetensors files (see safetensors.h).

   jansson prints the JSON header; this file owns the layout of the data,
   the checks on what is added, and the atomic write (a temporary file in
   the same folder, flushed, synced, renamed, and the folder synced). */
#include "safetensors/st_internal.h"

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
    if (!st_dtype_valid(dtype)) {
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
    if (st_tensor_sizes(ST_WRITER, &t) != 0)
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
    st_shown(kbuf, sizeof kbuf, key);
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

/* dataset.c: the list of training samples. Owns an ImageFolder index (every
 * path in one string pool, a label per path) or the Fashion-MNIST training
 * set held decoded in memory.
 *
 * ImageFolder order follows torchvision.datasets.ImageFolder: class folders
 * are root's subfolders (symlinks followed, hidden ones included) sorted by
 * name; label = rank in that order; a class's samples are found by
 * sorted(os.walk(class_dir, followlinks=True)), i.e. folders sorted by their
 * whole path, files sorted by name within each; a file is a sample when its
 * extension, compared case-insensitively, is one we decode (.jpg .jpeg
 * .png). Names compare byte-wise (Python's code-point order for UTF-8).
 * Like torchvision, a class folder without samples is an error. */
#define _DEFAULT_SOURCE /* struct dirent's d_type saves a stat per file */
#include "data/dataset.h"
#include "runtime/digest.h"
#include "runtime/errors.h"
#include "runtime/files.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct cae_dataset {
    char *describe;
    size_t n, num_classes;
    /* ImageFolder */
    char *pool;     /* NUL-terminated paths, back to back */
    size_t *offset; /* [n] start of path i in pool */
    int *labels;    /* [n] */
    char *root;     /* the folder, without trailing slashes */
    char **class_dirs; /* [num_classes] root/<class>, sorted */
    /* Fashion-MNIST */
    unsigned char *pixels; /* [n][rows][cols] */
    unsigned char *idx_labels;
    int rows, cols;
};

size_t cae_dataset_len(const cae_dataset *ds) { return ds->n; }
size_t cae_dataset_num_classes(const cae_dataset *ds) { return ds->num_classes; }
const char *cae_dataset_describe(const cae_dataset *ds) { return ds->describe; }

const char *cae_dataset_path(const cae_dataset *ds, size_t i)
{
    return ds->pool != NULL && i < ds->n ? ds->pool + ds->offset[i] : NULL;
}

uint64_t cae_dataset_digest(const cae_dataset *ds)
{
    uint64_t h = cae_digest_str(CAE_DIGEST_INIT, ds->describe);
    for (size_t i = 0; i < ds->n; i++) {
        int label = cae_dataset_label(ds, i);
        h = cae_digest_str(h, cae_dataset_path(ds, i));
        h = cae_digest(h, &label, sizeof label);
    }
    return h;
}

void cae_dataset_free(cae_dataset *ds)
{
    if (ds == NULL)
        return;
    free(ds->describe);
    for (size_t c = 0; ds->class_dirs != NULL && c < ds->num_classes; c++)
        free(ds->class_dirs[c]);
    free(ds->class_dirs);
    free(ds->root);
    free(ds->pool);
    free(ds->offset);
    free(ds->labels);
    free(ds->pixels);
    free(ds->idx_labels);
    free(ds);
}

int cae_dataset_label(const cae_dataset *ds, size_t i)
{
    if (i >= ds->n)
        return -1;
    return ds->pool != NULL ? ds->labels[i] : ds->idx_labels[i];
}

int cae_dataset_get(const cae_dataset *ds, size_t i, cae_decoder *dec, cae_image *out)
{
    if (i >= ds->n) {
        cae_errorf("cae_dataset_get: sample %zu of a data set of %zu", i, ds->n);
        return -1;
    }
    if (ds->pool != NULL) {
        if (dec == NULL) {
            cae_errorf("cae_dataset_get: no decoder for %s", ds->pool + ds->offset[i]);
            return -1;
        }
        return cae_decode_file(dec, ds->pool + ds->offset[i], out);
    }
    if (cae_image_reserve(out, ds->cols, ds->rows) != 0)
        return -1;
    const unsigned char *src = ds->pixels + i * (size_t)ds->rows * (size_t)ds->cols;
    for (size_t p = 0; p < (size_t)ds->rows * (size_t)ds->cols; p++)
        memset(out->rgb + 3 * p, src[p], 3); /* gray to RGB */
    return 0;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (s = malloc((size_t)n + 1)) == NULL) {
        cae_errorf("out of memory formatting \"%s\"", fmt);
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- growable arrays -------------------------------------------------------- */

/* Make room for one more element of size elem in *v (count n, capacity *cap). */
static int push_room(void **v, size_t *cap, size_t n, size_t elem)
{
    void *p;
    size_t c;

    if (n < *cap)
        return 0;
    c = *cap ? *cap * 2 : 16;
    if (c > SIZE_MAX / elem || (p = realloc(*v, c * elem)) == NULL) {
        cae_errorf("ImageFolder scan: out of memory");
        return -1;
    }
    *v = p;
    *cap = c;
    return 0;
}

typedef struct {
    char **v;
    size_t n, cap;
} str_list;

static int str_push(str_list *l, char *s)
{
    if (s == NULL || push_room((void **)&l->v, &l->cap, l->n, sizeof *l->v) != 0) {
        free(s);
        return -1;
    }
    l->v[l->n++] = s;
    return 0;
}

static void str_free(str_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- ImageFolder ------------------------------------------------------------ */

static int has_ext(const char *name, const char *const *exts)
{
    size_t n = strlen(name);
    for (; *exts != NULL; exts++) {
        size_t e = strlen(*exts);
        /* a file named just ".jpg" counts too, as with Python's endswith */
        if (n >= e && strcasecmp(name + n - e, *exts) == 0)
            return 1;
    }
    return 0;
}

static const char *const decodable[] = {".jpg", ".jpeg", ".png", NULL};
/* the rest of torchvision's IMG_EXTENSIONS: counted and reported */
static const char *const undecodable[] = {".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", NULL};

/* One folder met by the walk: its path and the samples directly in it. */
typedef struct {
    char *path;
    str_list files; /* names */
} walk_dir;

typedef struct {
    walk_dir *v;
    size_t n, cap;
    size_t ignored; /* image files in formats we do not decode */
} walk_state;

/* The chain of folders being walked, to skip symlink loops. */
typedef struct ancestor {
    dev_t dev;
    ino_t ino;
    const struct ancestor *up;
} ancestor;

/* 1 when path is a folder (following symlinks), 0 when not (or a broken link). */
static int is_dir(const char *path, const struct dirent *e)
{
    struct stat st;
#ifdef DT_DIR
    if (e->d_type == DT_DIR)
        return 1;
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK)
        return 0;
#else
    (void)e;
#endif
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int walk(walk_state *ws, const char *path, const ancestor *up)
{
    struct stat st;
    str_list subs = {0};
    size_t mine; /* my entry in ws->v (which moves when it grows) */
    struct dirent *e;
    DIR *dir;
    int rc = -1;

    if (stat(path, &st) != 0) {
        cae_errorf("%s: %s", path, strerror(errno));
        return -1;
    }
    for (const ancestor *a = up; a != NULL; a = a->up)
        if (a->dev == st.st_dev && a->ino == st.st_ino)
            return 0; /* a symlink back up the tree: been here */
    ancestor self = {st.st_dev, st.st_ino, up};

    if (push_room((void **)&ws->v, &ws->cap, ws->n, sizeof *ws->v) != 0)
        return -1;
    mine = ws->n;
    ws->v[mine].path = strdup(path);
    ws->v[mine].files = (str_list){0};
    if (ws->v[mine].path == NULL) {
        cae_errorf("%s: out of memory", path);
        return -1;
    }
    ws->n++;
    dir = opendir(path);
    if (dir == NULL) {
        cae_errorf("%s: cannot open folder: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        errno = 0;
        e = readdir(dir);
        if (e == NULL)
            break;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *full = dup_printf("%s/%s", path, e->d_name);
        if (full == NULL)
            goto out;
        if (is_dir(full, e)) {
            if (str_push(&subs, full) != 0)
                goto out;
            continue;
        }
        free(full);
        if (has_ext(e->d_name, decodable)) {
            if (str_push(&ws->v[mine].files, strdup(e->d_name)) != 0)
                goto out;
        } else if (has_ext(e->d_name, undecodable)) {
            ws->ignored++;
        }
    }
    if (errno != 0) {
        cae_errorf("%s: readdir: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (closedir(dir) != 0 && rc == 0) {
        cae_errorf("%s: closedir: %s", path, strerror(errno));
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < subs.n; i++)
        rc = walk(ws, subs.v[i], &self);
    str_free(&subs);
    return rc;
}

static int cmp_walk_dir(const void *a, const void *b)
{
    return strcmp(((const walk_dir *)a)->path, ((const walk_dir *)b)->path);
}

/* The index being built: the path pool and the arrays' capacities. */
typedef struct {
    char *data;
    size_t len, cap;
    size_t offset_cap, labels_cap;
    size_t ignored; /* image files in formats we do not decode */
} pool_buf;

static int pool_add(pool_buf *p, const char *dir, const char *name, size_t *off)
{
    size_t a = strlen(dir), b = strlen(name), need = p->len + a + b + 2;
    if (need > p->cap) {
        size_t c = p->cap ? p->cap : 4096;
        while (c < need)
            c *= 2;
        char *q = realloc(p->data, c);
        if (q == NULL) {
            cae_errorf("ImageFolder scan: out of memory");
            return -1;
        }
        p->data = q;
        p->cap = c;
    }
    *off = p->len;
    memcpy(p->data + p->len, dir, a);
    p->data[p->len + a] = '/';
    memcpy(p->data + p->len + a + 1, name, b + 1);
    p->len = need;
    return 0;
}

/* Append class label's samples (the walk of class_dir) to ds. */
static int add_class(cae_dataset *ds, pool_buf *pool, const char *class_dir, int label)
{
    walk_state ws = {0};
    size_t before = ds->n;
    int rc = walk(&ws, class_dir, NULL);

    if (ws.n > 1) /* qsort's array may not be NULL, even when empty */
        qsort(ws.v, ws.n, sizeof *ws.v, cmp_walk_dir);
    for (size_t d = 0; rc == 0 && d < ws.n; d++) {
        if (ws.v[d].files.n > 1)
            qsort(ws.v[d].files.v, ws.v[d].files.n, sizeof(char *), cmp_str);
        for (size_t f = 0; rc == 0 && f < ws.v[d].files.n; f++) {
            if (push_room((void **)&ds->offset, &pool->offset_cap, ds->n, sizeof(size_t)) != 0 ||
                push_room((void **)&ds->labels, &pool->labels_cap, ds->n, sizeof(int)) != 0 ||
                pool_add(pool, ws.v[d].path, ws.v[d].files.v[f], &ds->offset[ds->n]) != 0) {
                rc = -1;
                break;
            }
            ds->labels[ds->n++] = label;
        }
    }
    for (size_t d = 0; d < ws.n; d++) {
        free(ws.v[d].path);
        str_free(&ws.v[d].files);
    }
    free(ws.v);
    pool->ignored += ws.ignored;
    if (rc == 0 && ds->n == before) {
        cae_errorf("%s: class folder without images (.jpg, .jpeg or .png files)", class_dir);
        rc = -1;
    }
    return rc;
}

static int open_folder(cae_dataset *ds, const char *data_path)
{
    str_list classes = {0};
    pool_buf pool = {0};
    struct stat st;
    struct dirent *e;
    DIR *dir;
    int rc = -1;
    char *root = strdup(data_path);

    if (root == NULL) {
        cae_errorf("%s: out of memory", data_path);
        return -1;
    }
    for (size_t n = strlen(root); n > 1 && root[n - 1] == '/'; n--)
        root[n - 1] = '\0';
    if (stat(root, &st) != 0) {
        cae_errorf("--data_path %s: %s", data_path, strerror(errno));
        free(root);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        cae_errorf("--data_path %s: not a folder", data_path);
        free(root);
        return -1;
    }
    dir = opendir(root);
    if (dir == NULL) {
        cae_errorf("--data_path %s: cannot open folder: %s", data_path, strerror(errno));
        free(root);
        return -1;
    }
    for (;;) {
        errno = 0;
        e = readdir(dir);
        if (e == NULL)
            break;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *full = dup_printf("%s/%s", strcmp(root, "/") == 0 ? "" : root, e->d_name);
        if (full == NULL)
            goto out;
        if (is_dir(full, e)) {
            if (str_push(&classes, full) != 0)
                goto out;
        } else {
            free(full);
        }
    }
    if (errno != 0) {
        cae_errorf("--data_path %s: readdir: %s", data_path, strerror(errno));
        goto out;
    }
    if (classes.n == 0) {
        cae_errorf("--data_path %s: no class folders (ImageFolder wants %s/<class>/<image>)",
                   data_path, root);
        goto out;
    }
    if (classes.n > INT32_MAX) {
        cae_errorf("--data_path %s: too many class folders", data_path);
        goto out;
    }
    qsort(classes.v, classes.n, sizeof *classes.v, cmp_str);
    for (size_t c = 0; c < classes.n; c++)
        if (add_class(ds, &pool, classes.v[c], (int)c) != 0)
            goto out;
    ds->pool = pool.data;
    pool.data = NULL;
    ds->num_classes = classes.n;
    if (pool.ignored > 0)
        cae_errorf("--data_path %s: warning: %zu image files in formats cae-cl does not decode "
                   "(.bmp .ppm .pgm .tif .tiff .webp) left out",
                   data_path, pool.ignored);
    ds->describe = dup_printf("ImageFolder %s: %zu images, %zu classes", root, ds->n,
                              ds->num_classes);
    rc = ds->describe != NULL ? 0 : -1;
    /* kept for cae_dataset_open_splits' comparison of class names */
    ds->class_dirs = classes.v;
    ds->root = root;
    classes = (str_list){0};
    root = NULL;
out:
    if (closedir(dir) != 0 && rc == 0) {
        cae_errorf("--data_path %s: closedir: %s", data_path, strerror(errno));
        rc = -1;
    }
    free(pool.data);
    str_free(&classes);
    free(root);
    return rc;
}

/* ---- Fashion-MNIST (gzip IDX) ----------------------------------------------- */

/* Read exactly n bytes; -1 (reported) on a short or corrupt stream. */
static int gz_exact(gzFile f, const char *path, void *buf, size_t n)
{
    size_t got = 0;
    int err;

    while (got < n) {
        unsigned chunk = n - got > (1u << 30) ? 1u << 30 : (unsigned)(n - got);
        int r = gzread(f, (char *)buf + got, chunk);
        if (r < 0) {
            const char *msg = gzerror(f, &err);
            cae_errorf("%s: %s", path, err == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (r == 0) {
            const char *msg = gzerror(f, &err);
            cae_errorf("%s: truncated (%zu of %zu bytes; %s)", path, got, n,
                       err != Z_OK ? msg : "end of file");
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* The stream must end here (reading on also checks the gzip CRC). */
static int gz_end(gzFile f, const char *path)
{
    unsigned char c;
    int err, r = gzread(f, &c, 1);

    if (r != 0 || (gzerror(f, &err), err != Z_OK)) {
        cae_errorf("%s: %s", path, r > 0 ? "data after the last sample" : gzerror(f, &err));
        return -1;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Open an IDX file; reads header_bytes of header into hdr and checks its magic. */
static gzFile idx_open(const char *path, unsigned char *hdr, size_t header_bytes, uint32_t magic)
{
    struct stat st;
    char why[256];
    int fd = cae_open_regular(path, &st, why, sizeof why);
    gzFile f;

    if (fd < 0) {
        cae_errorf("%s: %s", path, why);
        return NULL;
    }
    f = gzdopen(fd, "rb");
    if (f == NULL) {
        cae_errorf("%s: cannot open: out of memory", path);
        close(fd);
        return NULL;
    }
    if (gz_exact(f, path, hdr, header_bytes) != 0) {
        gzclose(f);
        return NULL;
    }
    if (be32(hdr) != magic) {
        cae_errorf("%s: not an IDX file (magic %u, expected %u)", path, be32(hdr), magic);
        gzclose(f);
        return NULL;
    }
    return f;
}

static int gz_close(gzFile f, const char *path)
{
    int r = gzclose(f);
    if (r != Z_OK) {
        cae_errorf("%s: gzclose failed (%d)", path, r);
        return -1;
    }
    return 0;
}

/* prefix: "train" (60k) or "t10k" (the 10k test split) */
static int open_idx(cae_dataset *ds, const char *dirpath, const char *prefix)
{
    unsigned char hdr[16];
    char *ipath = dup_printf("%s/%s-images-idx3-ubyte.gz", dirpath, prefix);
    char *lpath = dup_printf("%s/%s-labels-idx1-ubyte.gz", dirpath, prefix);
    gzFile f = NULL;
    uint32_t n, rows, cols, nl;
    int rc = -1, maxl = -1;

    if (ipath == NULL || lpath == NULL)
        goto out;
    if ((f = idx_open(ipath, hdr, 16, 2051)) == NULL)
        goto out;
    n = be32(hdr + 4);
    rows = be32(hdr + 8);
    cols = be32(hdr + 12);
    if (n == 0 || n > (1u << 28) || rows == 0 || cols == 0 || rows > 4096 || cols > 4096 ||
        (uint64_t)n * rows * cols > ((uint64_t)1 << 34)) {
        cae_errorf("%s: implausible IDX shape %u x %u x %u", ipath, n, rows, cols);
        goto out;
    }
    ds->pixels = malloc((size_t)n * rows * cols);
    if (ds->pixels == NULL) {
        cae_errorf("%s: out of memory for %u images", ipath, n);
        goto out;
    }
    if (gz_exact(f, ipath, ds->pixels, (size_t)n * rows * cols) != 0 || gz_end(f, ipath) != 0)
        goto out;
    rc = gz_close(f, ipath);
    f = NULL;
    if (rc != 0)
        goto out;
    rc = -1;
    if ((f = idx_open(lpath, hdr, 8, 2049)) == NULL)
        goto out;
    nl = be32(hdr + 4);
    if (nl != n) {
        cae_errorf("%s: %u labels for the %u images of %s", lpath, nl, n, ipath);
        goto out;
    }
    ds->idx_labels = malloc(n);
    if (ds->idx_labels == NULL) {
        cae_errorf("%s: out of memory", lpath);
        goto out;
    }
    if (gz_exact(f, lpath, ds->idx_labels, n) != 0 || gz_end(f, lpath) != 0)
        goto out;
    rc = gz_close(f, lpath);
    f = NULL;
    if (rc != 0)
        goto out;
    rc = -1;
    for (uint32_t i = 0; i < n; i++)
        maxl = ds->idx_labels[i] > maxl ? ds->idx_labels[i] : maxl;
    ds->n = n;
    ds->rows = (int)rows;
    ds->cols = (int)cols;
    ds->num_classes = (size_t)maxl + 1;
    if (strcmp(prefix, "train") == 0)
        ds->describe = dup_printf("Fashion-MNIST %s: %zu images, %zu classes", dirpath, ds->n,
                                  ds->num_classes);
    else
        ds->describe = dup_printf("Fashion-MNIST %s (%s): %zu images, %zu classes", dirpath, prefix,
                                  ds->n, ds->num_classes);
    rc = ds->describe != NULL ? 0 : -1;
out:
    if (f != NULL)
        gzclose(f);
    free(ipath);
    free(lpath);
    return rc;
}

int cae_dataset_open(cae_dataset **out, const char *data_path)
{
    return cae_dataset_open_split(out, data_path, NULL);
}

/* class c's folder name, "(none)" past the last */
static const char *class_name(const cae_dataset *ds, size_t c)
{
    return c < ds->num_classes ? strrchr(ds->class_dirs[c], '/') + 1 : "(none)";
}

/* Labels are class ranks, so val's classes must be train's, name for name:
 * else the model would be scored against the wrong classes. */
static int check_same_classes(const cae_dataset *train, const cae_dataset *val)
{
    size_t n = train->num_classes > val->num_classes ? train->num_classes : val->num_classes;
    if (train->class_dirs == NULL || val->class_dirs == NULL)
        return 0; /* Fashion-MNIST: one fixed class list */
    for (size_t c = 0; c < n; c++)
        if (strcmp(class_name(train, c), class_name(val, c)) != 0) {
            cae_errorf("%s and %s have other classes: class %zu is '%s' in the first, '%s' in "
                       "the second (the val folder must hold train's classes, by the same names)",
                       train->root, val->root, c, class_name(train, c), class_name(val, c));
            return -1;
        }
    return 0;
}

int cae_dataset_open_splits(cae_dataset **train, cae_dataset **val, const char *data_path)
{
    *val = NULL;
    CAE_TRY(cae_dataset_open_split(train, data_path, "train"));
    if (cae_dataset_open_split(val, data_path, "val") != 0 ||
        check_same_classes(*train, *val) != 0) {
        cae_dataset_free(*train);
        cae_dataset_free(*val);
        *train = *val = NULL;
        return -1;
    }
    return 0;
}

int cae_dataset_open_split(cae_dataset **out, const char *data_path, const char *split)
{
    cae_dataset *ds = calloc(1, sizeof *ds);
    int rc;

    *out = NULL;
    if (ds == NULL) {
        cae_errorf("cae_dataset_open: out of memory");
        return -1;
    }
    if (data_path == NULL || data_path[0] == '\0') {
        const char *dir = getenv("CAE_FASHION_MNIST_DIR");
        int test = split != NULL && strcmp(split, "train") != 0;
        rc = open_idx(ds, dir != NULL && dir[0] != '\0' ? dir : CAE_FASHION_MNIST_DIR,
                      test ? "t10k" : "train");
    } else if (split != NULL) {
        char *sub = dup_printf("%s/%s", data_path, split);
        rc = sub != NULL ? open_folder(ds, sub) : -1;
        free(sub);
    } else {
        rc = open_folder(ds, data_path);
    }
    if (rc != 0) {
        cae_dataset_free(ds);
        return -1;
    }
    *out = ds;
    return 0;
}

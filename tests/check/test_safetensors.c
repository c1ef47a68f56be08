/* tests/check/test_safetensors.c: the safetensors reader and writer.

   Round trips of every dtype (with a scalar, empty tensors and metadata);
   every corruption the reader must refuse, each with exactly one stderr line
   that names the file and, where there is one, the tensor; atomic writes that
   fail without touching the old file or leaving a temporary behind; the
   writer's own refusals; cae_st_expect. Bad files are built here, in a fresh
   mkdtemp folder per test. */
#include "safetensors/safetensors.h"

#include "tests/common/capture.h"
#include "tests/common/scratch.h"

#include "tests/common/hostutil.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[4096];

/* ---- fixture and helpers ---------------------------------------------------- */

static void setup(void)
{
    scratch_make(tmpdir, sizeof tmpdir, "st");
}

static void teardown(void)
{
    capture_abandon(); /* a test failed while capturing */
    scratch_remove(tmpdir);
}

/* tmpdir/NAME in a static buffer, reused after 16 calls: plenty for a test. */
static const char *tpath(const char *name)
{
    static char buf[16][8192];
    static int next;
    char *p = buf[next++ % 16];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void put_bytes(const char *path, const void *bytes, size_t len)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_msg(fp != NULL, "fopen %s: %s", path, strerror(errno));
    ck_assert(len == 0 || fwrite(bytes, 1, len, fp) == len);
    ck_assert(fclose(fp) == 0);
}

/* A safetensors file: declared header length, header text, data area. */
static void put_st(const char *path, uint64_t hlen, const char *hdr, size_t data_len)
{
    size_t hl = strlen(hdr), total = 8 + hl + data_len;
    unsigned char *buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + hl + i] = (unsigned char)(i * 7 + 1);
    put_bytes(path, buf, total);
    free(buf);
}

/* Whole file into memory (NULL if it cannot be read). */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (fp == NULL)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(fp);
    return buf;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    ck_assert_msg(d != NULL, "opendir %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Exactly one line, starting "cae-cl: FILE: ", containing each fragment. */
static void assert_one_line(const char *what, const char *err, const char *file, const char *tensor,
                            const char *fragment)
{
    char want[8192];
    const char *nl = strchr(err, '\n');
    if (getenv("CAE_TEST_SHOW_ERRORS") != NULL)   /* to review the wording by eye */
        printf("%-32s %s", what, err);
    ck_assert_msg(nl != NULL && nl[1] == '\0', "%s: want one stderr line, got: %s", what, err);
    snprintf(want, sizeof want, "cae-cl: %s: ", file);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s: line does not start '%s': %s", what, want, err);
    if (tensor != NULL) {
        snprintf(want, sizeof want, "tensor '%s': ", tensor);
        ck_assert_msg(strstr(err, want) != NULL, "%s: line does not name %s: %s", what, want, err);
    }
    if (fragment != NULL)
        ck_assert_msg(strstr(err, fragment) != NULL, "%s: line lacks '%s': %s", what, fragment, err);
}

static int is_empty(const cae_st_file *f)
{
    return f->path == NULL && f->bytes == NULL && f->size == 0 && f->tensors == NULL && f->n_tensors == 0 &&
           f->meta_keys == NULL && f->meta_values == NULL && f->n_meta == 0;
}

/* Reads PATH, which must be refused with one line naming FILE (and TENSOR)
 * by the whole read and by the header-only read alike; the quiet header
 * read prints nothing and hands back the same reason. */
static void expect_refused_by(int header_only, const char *what, const char *path,
                              const char *tensor, const char *fragment)
{
    cae_st_file f;
    char *err;
    int rc;
    memset(&f, 0xab, sizeof f);   /* the reader must clear it */
    capture_begin(tmpdir);
    rc = header_only ? cae_st_read_header(&f, path) : cae_st_read(&f, path);
    err = capture_end();
    ck_assert_msg(rc == -1, "%s: read returned %d", what, rc);
    ck_assert_msg(is_empty(&f), "%s: file struct not left empty", what);
    assert_one_line(what, err, path, tensor, fragment);
    if (tensor == NULL && strstr(fragment, "tensor '") == NULL)
        ck_assert_msg(strstr(err, "tensor '") == NULL, "%s: names a tensor: %s", what, err);
    free(err);
    cae_st_free(&f);
}

static void expect_refused(const char *what, const char *path, const char *tensor, const char *fragment)
{
    cae_st_file f;
    char why[1024], *err;
    expect_refused_by(0, what, path, tensor, fragment);
    expect_refused_by(1, what, path, tensor, fragment);
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_st_read_header_quiet(&f, path, why, sizeof why), -1);
    err = capture_end();
    ck_assert_msg(err[0] == '\0', "%s: the quiet read printed: %s", what, err);
    ck_assert_msg(strstr(why, fragment) != NULL, "%s: quiet reason '%s' lacks '%s'", what, why,
                  fragment);
    ck_assert(is_empty(&f));
    free(err);
}

/* ---- round trip ------------------------------------------------------------- */

START_TEST(test_dtype_table)
{
    static const struct {
        cae_dtype t;
        const char *name;
        size_t size;
    } want[] = {
        {CAE_DT_F32, "F32", 4}, {CAE_DT_F64, "F64", 8}, {CAE_DT_F16, "F16", 2}, {CAE_DT_BF16, "BF16", 2},
        {CAE_DT_I64, "I64", 8}, {CAE_DT_I32, "I32", 4}, {CAE_DT_I16, "I16", 2}, {CAE_DT_I8, "I8", 1},
        {CAE_DT_U8, "U8", 1},   {CAE_DT_BOOL, "BOOL", 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ck_assert_str_eq(cae_dtype_name(want[i].t), want[i].name);
        ck_assert_uint_eq(cae_dtype_size(want[i].t), want[i].size);
    }
    ck_assert_str_eq(cae_dtype_name((cae_dtype)99), "?");
    ck_assert_uint_eq(cae_dtype_size((cae_dtype)99), 0);
}
END_TEST

struct rt_tensor {
    const char *name;
    cae_dtype dtype;
    int ndim;
    int64_t shape[CAE_ST_MAX_DIMS];
    size_t numel;
};

/* Odd-sized tensors early on so that later ones start at odd offsets. */
static const struct rt_tensor rt[] = {
    {"encoder.patch_embed.proj.weight", CAE_DT_F32, 4, {2, 3, 1, 2}, 12},
    {"i8.odd", CAE_DT_I8, 1, {5}, 5},
    {"f64", CAE_DT_F64, 2, {3, 1}, 3},
    {"f16", CAE_DT_F16, 1, {3}, 3},
    {"bf16", CAE_DT_BF16, 3, {1, 1, 3}, 3},
    {"i64", CAE_DT_I64, 1, {2}, 2},
    {"i32", CAE_DT_I32, 2, {2, 2}, 4},
    {"i16", CAE_DT_I16, 1, {3}, 3},
    {"u8", CAE_DT_U8, 1, {3}, 3},
    {"bool", CAE_DT_BOOL, 1, {2}, 2},
    {"scalar", CAE_DT_F32, 0, {0}, 1},
    {"empty", CAE_DT_F32, 2, {0, 4}, 0},
    {"empty.huge_dims", CAE_DT_I32, 3, {INT64_C(1) << 40, 0, INT64_C(1) << 40}, 0},
    {"mask_token", CAE_DT_F32, 3, {1, 1, 8}, 8},
    {"every.dim", CAE_DT_U8, 8, {1, 2, 1, 2, 1, 2, 1, 2}, 16},
};
#define N_RT (sizeof rt / sizeof rt[0])

/* Deterministic bytes for tensor i; every value differs between tensors. */
static unsigned char *rt_data(size_t i, size_t nbytes)
{
    unsigned char *d = malloc(nbytes ? nbytes : 1);
    ck_assert_ptr_nonnull(d);
    for (size_t k = 0; k < nbytes; k++)
        d[k] = (unsigned char)(i * 31 + k * 5 + 3);
    return d;
}

START_TEST(test_round_trip)
{
    cae_st_writer *w = cae_st_writer_new();
    cae_st_file f;
    const char *path = tpath("model.safetensors");
    uint64_t hlen = 0;

    ck_assert_ptr_nonnull(w);
    for (size_t i = 0; i < N_RT; i++) {
        size_t nb = rt[i].numel * cae_dtype_size(rt[i].dtype);
        unsigned char *d = rt_data(i, nb);
        ck_assert_int_eq(cae_st_writer_add(w, rt[i].name, rt[i].dtype, rt[i].ndim, rt[i].shape, d), 0);
        memset(d, 0, nb);   /* the writer must have copied it */
        free(d);
    }
    ck_assert_int_eq(cae_st_writer_meta(w, "format", "pt"), 0);
    ck_assert_int_eq(cae_st_writer_meta(w, "step", "1200"), 0);
    ck_assert_int_eq(cae_st_writer_meta(w, "note", "quotes \" and \\ and \xc3\xa9"), 0);
    ck_assert_int_eq(cae_st_writer_write(w, path), 0);
    /* A second write replaces the file in place. */
    ck_assert_int_eq(cae_st_writer_write(w, path), 0);
    cae_st_writer_free(w);
    ck_assert_uint_eq(count_entries(tmpdir), 1);   /* no temporary left */

    ck_assert_int_eq(cae_st_read(&f, path), 0);
    ck_assert_str_eq(f.path, path);
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f.bytes[i];
    ck_assert_uint_eq((8 + hlen) % 8, 0);
    ck_assert_uint_eq(f.n_tensors, N_RT);
    size_t total = 0;
    for (size_t i = 0; i < N_RT; i++) {
        const cae_st_tensor *t = &f.tensors[i];
        size_t nb = rt[i].numel * cae_dtype_size(rt[i].dtype);
        unsigned char *d = rt_data(i, nb);
        ck_assert_str_eq(t->name, rt[i].name);   /* header order = order added */
        ck_assert_int_eq(t->dtype, rt[i].dtype);
        ck_assert_int_eq(t->ndim, rt[i].ndim);
        for (int k = 0; k < rt[i].ndim; k++)
            ck_assert_int_eq(t->shape[k], rt[i].shape[k]);
        ck_assert_uint_eq(t->numel, rt[i].numel);
        ck_assert_uint_eq(t->nbytes, nb);
        /* Stored contiguously in the order added. */
        ck_assert_ptr_eq(t->data, f.bytes + 8 + hlen + total);
        if (nb > 0)
            ck_assert_mem_eq(t->data, d, nb);
        ck_assert_ptr_eq(cae_st_find(&f, rt[i].name), t);
        total += nb;
        free(d);
    }
    ck_assert_uint_eq(f.size, 8 + hlen + total);
    ck_assert_uint_eq(f.n_meta, 3);
    ck_assert_str_eq(cae_st_meta(&f, "format"), "pt");
    ck_assert_str_eq(cae_st_meta(&f, "step"), "1200");
    ck_assert_str_eq(cae_st_meta(&f, "note"), "quotes \" and \\ and \xc3\xa9");
    ck_assert_ptr_null(cae_st_meta(&f, "absent"));
    ck_assert_ptr_null(cae_st_find(&f, "absent"));
    ck_assert_ptr_null(cae_st_find(&f, "encoder.patch_embed.proj"));
    /* the header alone: the same names, shapes and metadata, no data */
    {
        cae_st_file h;
        ck_assert_int_eq(cae_st_read_header(&h, path), 0);
        ck_assert_uint_eq(h.size, f.size);
        ck_assert_uint_eq(h.n_tensors, f.n_tensors);
        for (size_t i = 0; i < N_RT; i++) {
            ck_assert_str_eq(h.tensors[i].name, f.tensors[i].name);
            ck_assert_int_eq(h.tensors[i].ndim, f.tensors[i].ndim);
            ck_assert_uint_eq(h.tensors[i].nbytes, f.tensors[i].nbytes);
            ck_assert_ptr_null(h.tensors[i].data);
        }
        ck_assert_str_eq(cae_st_meta(&h, "step"), "1200");
        cae_st_free(&h);
    }
    cae_st_free(&f);
    ck_assert(is_empty(&f));
    cae_st_free(&f);   /* freeing twice is harmless */
}
END_TEST

START_TEST(test_round_trip_empty)
{
    cae_st_writer *w = cae_st_writer_new();
    cae_st_file f;
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(cae_st_writer_write(w, tpath("empty.safetensors")), 0);
    cae_st_writer_free(w);
    ck_assert_int_eq(cae_st_read(&f, tpath("empty.safetensors")), 0);
    ck_assert_uint_eq(f.n_tensors, 0);
    ck_assert_uint_eq(f.n_meta, 0);
    ck_assert_uint_eq(f.size, 16);   /* length, "{}" padded to 8 */
    ck_assert_ptr_null(cae_st_find(&f, "x"));
    cae_st_free(&f);
    cae_st_writer_free(NULL);
}
END_TEST

/* Things the official format allows that our writer never produces: metadata
   last, header order unlike data order, a gap, trailing bytes, whitespace,
   an empty tensor inside another's bytes. */
START_TEST(test_read_hand_made)
{
    const char *hdr = " { \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [8, 10]},\n"
                      "  \"a\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4], \"extra\": 1},\n"
                      "  \"z\": {\"dtype\": \"I16\", \"shape\": [0, 3], \"data_offsets\": [9, 9]},\n"
                      "  \"__metadata__\": {\"k\": \"v\"} }   ";
    const char *path = tpath("hand.safetensors");
    cae_st_file f;
    const unsigned char *area;
    put_st(path, strlen(hdr), hdr, 16);
    ck_assert_int_eq(cae_st_read(&f, path), 0);
    area = f.bytes + 8 + strlen(hdr);
    ck_assert_uint_eq(f.n_tensors, 3);
    ck_assert_str_eq(f.tensors[0].name, "b");
    ck_assert_str_eq(f.tensors[1].name, "a");
    ck_assert_str_eq(f.tensors[2].name, "z");
    ck_assert_ptr_eq(f.tensors[0].data, area + 8);
    ck_assert_ptr_eq(f.tensors[1].data, area);
    ck_assert_int_eq(f.tensors[1].ndim, 0);
    ck_assert_uint_eq(f.tensors[1].numel, 1);
    ck_assert_uint_eq(f.tensors[1].nbytes, 4);
    ck_assert_uint_eq(f.tensors[2].numel, 0);
    ck_assert_uint_eq(f.tensors[0].nbytes, 2);
    ck_assert_uint_eq(((const unsigned char *)f.tensors[0].data)[1], (9 * 7 + 1) & 0xff);
    ck_assert_str_eq(cae_st_meta(&f, "k"), "v");
    cae_st_free(&f);
}
END_TEST

/* ---- corrupt files ---------------------------------------------------------- */

/* Files broken before the JSON: their size and declared header length. */
static const struct raw_case {
    const char *what;
    size_t file_len;
    uint64_t hlen;
    const char *fragment;
} raw_cases[] = {
    {"empty file", 0, 0, "file is 0 bytes, shorter than the 8-byte header length"},
    {"5-byte file", 5, 2, "file is 5 bytes, shorter than the 8-byte header length"},
    {"header length 0", 24, 0, "header length is 0"},
    {"header longer than file", 18, 11, "header length 11 is larger than the 10 bytes after it"},
    {"header length 2^40", 64, UINT64_C(1) << 40, "header length 1099511627776 is absurd"},
    {"header length 2^64-1", 64, UINT64_MAX, "header length 18446744073709551615 is absurd"},
    {"header length 100 MiB + 1", 64, (UINT64_C(100) << 20) + 1, "is absurd (over 100 MiB)"},
};
#define N_RAW (sizeof raw_cases / sizeof raw_cases[0])

START_TEST(test_bad_raw)
{
    const struct raw_case *c = &raw_cases[_i];
    const char *path = tpath("raw.safetensors");
    unsigned char buf[64];
    ck_assert(c->file_len <= sizeof buf);
    memset(buf, ' ', sizeof buf);
    buf[8] = '{';
    buf[9] = '}';
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(c->hlen >> (8 * i));
    put_bytes(path, buf, c->file_len);
    expect_refused(c->what, path, NULL, c->fragment);
}
END_TEST

START_TEST(test_bad_path)
{
    ck_assert(mkdir(tpath("folder.safetensors"), 0700) == 0);
    expect_refused("directory", tpath("folder.safetensors"), NULL, "not a regular file");
    expect_refused("missing", tpath("missing.safetensors"), NULL, "cannot open: No such file or directory");
}
END_TEST

/* A PyTorch .pth where safetensors is expected: a zip archive (torch.save
 * since 1.6) or a bare pickle (older torch.save) is named as such, with the
 * converter to run, instead of an absurd header length. */
START_TEST(test_pytorch_file)
{
    static const unsigned char zip[] = {'P', 'K', 3, 4, 0x14, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char pickle[] = {0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46,
                                           0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.', 0};
    static const char *fragment = "a PyTorch checkpoint, not safetensors: convert it with "
                                  "cae-cl-convert-checkpoint to-safetensors";
    const char *path = tpath("checkpoint.pth");

    put_bytes(path, zip, sizeof zip);
    expect_refused("zip .pth", path, NULL, fragment);
    put_bytes(path, pickle, sizeof pickle);
    expect_refused("pickle .pth", path, NULL, fragment);
}
END_TEST

#define T(dt, shape, offs) "{\"dtype\": " dt ", \"shape\": " shape ", \"data_offsets\": " offs "}"

/* Headers the reader must refuse; the data area is 16 bytes. */
static const struct bad_case {
    const char *what;
    const char *header;
    const char *tensor;     /* the name the line must show, NULL if none */
    const char *fragment;
} bad_cases[] = {
    {"truncated JSON", "{\"w\": ", NULL, "header is not valid JSON"},
    {"trailing garbage", "{} x", NULL, "header is not valid JSON"},
    {"invalid UTF-8", "{\"w\xff\": 1}", NULL, "header is not valid JSON"},
    {"NUL escape in a name", "{\"a\\u0000b\": 1}", NULL, "header is not valid JSON"},
    {"integer beyond int64", "{\"w\": " T("\"U8\"", "[99999999999999999999]", "[0, 1]") "}", NULL,
     "header is not valid JSON"},
    {"array header", "[1, 2]", NULL, "header is not a JSON object"},
    {"entry not an object", "{\"w\": 3}", "w", "entry is not an object"},
    {"entry an array", "{\"w\": [\"F32\", [1], [0, 4]]}", "w", "entry is not an object"},
    {"control bytes in a name", "{\"a\\nb\": 3}", "a?b", "entry is not an object"},
    {"raw newline in a name", "{\"a\nb\": 3}", NULL, "header is not valid JSON"},
    {"missing dtype", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "w", "entry lacks dtype"},
    {"missing shape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "w", "entry lacks shape"},
    {"missing data_offsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", "w", "entry lacks data_offsets"},
    {"dtype a number", "{\"w\": " T("4", "[1]", "[0, 4]") "}", "w", "dtype is not a string"},
    {"dtype U16", "{\"w\": " T("\"U16\"", "[1]", "[0, 2]") "}", "w", "unknown dtype 'U16'"},
    {"dtype lower case", "{\"w\": " T("\"f32\"", "[1]", "[0, 4]") "}", "w", "unknown dtype 'f32'"},
    {"shape a number", "{\"w\": " T("\"F32\"", "4", "[0, 16]") "}", "w", "shape is not an array"},
    {"shape null", "{\"w\": " T("\"F32\"", "null", "[0, 16]") "}", "w", "shape is not an array"},
    {"negative dim", "{\"w\": " T("\"F32\"", "[2, -1]", "[0, 4]") "}", "w",
     "shape[1] is not a non-negative integer"},
    {"real dim", "{\"w\": " T("\"F32\"", "[2.0]", "[0, 8]") "}", "w", "shape[0] is not a non-negative integer"},
    {"string dim", "{\"w\": " T("\"F32\"", "[\"2\"]", "[0, 8]") "}", "w",
     "shape[0] is not a non-negative integer"},
    {"nested dim", "{\"w\": " T("\"F32\"", "[[2]]", "[0, 8]") "}", "w", "shape[0] is not a non-negative integer"},
    {"9 dims", "{\"w\": " T("\"U8\"", "[1, 1, 1, 1, 1, 1, 1, 1, 1]", "[0, 1]") "}", "w",
     "shape has 9 dims, at most 8 are supported"},
    {"element count overflows", "{\"w\": " T("\"U8\"", "[4294967296, 4294967296, 2]", "[0, 1]") "}", "w",
     "shape [4294967296, 4294967296, 2] has more elements than fit in memory"},
    {"byte count overflows", "{\"w\": " T("\"F32\"", "[4611686018427387904]", "[0, 1]") "}", "w",
     "shape [4611686018427387904] of F32 needs more bytes than fit in memory"},
    {"offsets a number", "{\"w\": " T("\"F32\"", "[1]", "0") "}", "w",
     "data_offsets is not an array of two integers"},
    {"one offset", "{\"w\": " T("\"F32\"", "[1]", "[4]") "}", "w", "data_offsets is not an array of two integers"},
    {"three offsets", "{\"w\": " T("\"F32\"", "[1]", "[0, 4, 8]") "}", "w",
     "data_offsets is not an array of two integers"},
    {"real offset", "{\"w\": " T("\"F32\"", "[1]", "[0, 4.0]") "}", "w",
     "data_offsets is not an array of two integers"},
    {"negative offset", "{\"w\": " T("\"F32\"", "[1]", "[-4, 0]") "}", "w",
     "data_offsets [-4, 0) has a negative offset"},
    {"begin after end", "{\"w\": " T("\"F32\"", "[1]", "[8, 4]") "}", "w", "data_offsets [8, 4) begins after it ends"},
    {"offsets outside the data area",
     "{\"a\": " T("\"U8\"", "[2]", "[0, 2]") ", \"encoder.norm.weight\": " T("\"U8\"", "[10]", "[10, 20]") "}",
     "encoder.norm.weight", "data_offsets [10, 20) outside the data area (16 bytes)"},
    {"empty tensor past the end", "{\"w\": " T("\"F32\"", "[0]", "[17, 17]") "}", "w",
     "data_offsets [17, 17) outside the data area (16 bytes)"},
    {"too few bytes", "{\"w\": " T("\"F32\"", "[2, 2]", "[0, 12]") "}", "w",
     "data_offsets [0, 12) hold 12 bytes but shape [2, 2] of F32 needs 16 (4 elements x 4 bytes)"},
    {"too many bytes", "{\"w\": " T("\"BF16\"", "[3]", "[2, 10]") "}", "w",
     "hold 8 bytes but shape [3] of BF16 needs 6 (3 elements x 2 bytes)"},
    {"bytes for an empty tensor", "{\"w\": " T("\"F32\"", "[0]", "[0, 4]") "}", "w",
     "hold 4 bytes but shape [0] of F32 needs 0"},
    {"scalar with two elements' bytes", "{\"w\": " T("\"F64\"", "[]", "[0, 16]") "}", "w",
     "hold 16 bytes but shape [] of F64 needs 8"},
    {"overlap", "{\"a\": " T("\"F32\"", "[2]", "[0, 8]") ", \"b\": " T("\"F32\"", "[2]", "[4, 12]") "}", "b",
     "data_offsets [4, 12) overlap tensor 'a' at [0, 8)"},
    {"same bytes twice", "{\"a\": " T("\"F32\"", "[2]", "[0, 8]") ", \"b\": " T("\"I32\"", "[2]", "[0, 8]") "}",
     "b", "overlap tensor 'a' at [0, 8)"},
    {"overlap inside a longer tensor",
     "{\"c\": " T("\"U8\"", "[2]", "[6, 8]") ", \"a\": " T("\"U8\"", "[2]", "[0, 2]") ", \"big\": "
     T("\"U8\"", "[14]", "[2, 16]") "}",
     "c", "data_offsets [6, 8) overlap tensor 'big' at [2, 16)"},
    {"repeated name", "{\"a\": " T("\"U8\"", "[1]", "[0, 1]") ", \"a\": " T("\"U8\"", "[1]", "[1, 2]") "}", "a",
     "name appears more than once in the header"},
    {"repeated long name with escapes",
     "{\"encoder.blocks.0.attn.qkv.\\\"w\\\\\": " T("\"U8\"", "[1]", "[0, 1]")
     ", \"b\": 1, \"encoder.blocks.0.attn.qkv.\\\"w\\\\\" : " T("\"U8\"", "[1]", "[1, 2]") "}",
     "encoder.blocks.0.attn.qkv.\"w\\", "name appears more than once in the header"},
    {"repeated key in an entry",
     "{\"w\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", NULL,
     "header repeats the key 'dtype' within one object"},
    {"repeated __metadata__", "{\"__metadata__\": {}, \"__metadata__\": {}}", NULL,
     "header repeats the key '__metadata__' within one object"},
    {"repeated metadata key", "{\"__metadata__\": {\"step\": \"1\", \"step\": \"2\"}}", NULL,
     "header repeats the key 'step' within one object"},
    {"metadata a string", "{\"__metadata__\": \"x\"}", NULL, "__metadata__ is not an object"},
    {"metadata an array", "{\"__metadata__\": [\"a\", \"b\"]}", NULL, "__metadata__ is not an object"},
    {"metadata value a number", "{\"__metadata__\": {\"format\": \"pt\", \"step\": 3}}", NULL,
     "__metadata__ value of 'step' is not a string"},
    {"metadata value null", "{\"__metadata__\": {\"step\": null}}", NULL,
     "__metadata__ value of 'step' is not a string"},
    {"bad tensor after good ones",
     "{\"a\": " T("\"U8\"", "[1]", "[0, 1]") ", \"__metadata__\": {\"k\": \"v\"}, \"b\": "
     T("\"U8\"", "[1]", "[1, 3]") "}",
     "b", "hold 2 bytes but shape [1] of U8 needs 1"},
};
#define N_BAD (sizeof bad_cases / sizeof bad_cases[0])

START_TEST(test_bad_header)
{
    const struct bad_case *c = &bad_cases[_i];
    const char *path = tpath("bad.safetensors");
    put_st(path, strlen(c->header), c->header, 16);
    expect_refused(c->what, path, c->tensor, c->fragment);
}
END_TEST

/* The same header read whole, then cut to end inside the JSON. */
START_TEST(test_bad_header_cut)
{
    const char *hdr = "{\"w\": " T("\"F32\"", "[1]", "[0, 4]") "}";
    const char *path = tpath("cut.safetensors");
    cae_st_file f;
    put_st(path, strlen(hdr), hdr, 4);
    ck_assert_int_eq(cae_st_read(&f, path), 0);
    cae_st_free(&f);
    put_st(path, strlen(hdr) - 3, hdr, 0);
    expect_refused("header cut short", path, NULL, "header is not valid JSON");
}
END_TEST

/* ---- cae_st_expect ------------------------------------------------------------ */

/* cae_st_expect(f, name, dt, ndim, shape) refuses, with exactly one stderr
 * line naming path and name and saying fragment */
static void expect_mismatch(const char *what, const cae_st_file *f, const char *path,
                            const char *name, cae_dtype dt, int ndim, const int64_t *shape,
                            const char *fragment)
{
    const cae_st_tensor *t;
    char *err;
    capture_begin(tmpdir);
    t = cae_st_expect(f, name, dt, ndim, shape);
    err = capture_end();
    ck_assert_ptr_null(t);
    assert_one_line(what, err, path, name, fragment);
    free(err);
}

START_TEST(test_expect)
{
    cae_st_writer *w = cae_st_writer_new();
    const int64_t shape[2] = {3, 2}, wrong[2] = {2, 3}, longer[3] = {3, 2, 1};
    const float data[6] = {1, 2, 3, 4, 5, 6};
    const char *path = tpath("expect.safetensors");
    const cae_st_tensor *t;
    cae_st_file f;

    ck_assert_int_eq(cae_st_writer_add(w, "head.weight", CAE_DT_F32, 2, shape, data), 0);
    ck_assert_int_eq(cae_st_writer_add(w, "scale", CAE_DT_F32, 0, NULL, data), 0);
    ck_assert_int_eq(cae_st_writer_write(w, path), 0);
    cae_st_writer_free(w);
    ck_assert_int_eq(cae_st_read(&f, path), 0);

    t = cae_st_expect(&f, "head.weight", CAE_DT_F32, 2, shape);
    ck_assert_ptr_nonnull(t);
    ck_assert_mem_eq(t->data, data, sizeof data);
    t = cae_st_expect(&f, "scale", CAE_DT_F32, 0, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert(*(const float *)t->data == 1.0f);

    expect_mismatch("wrong dtype", &f, path, "head.weight", CAE_DT_F16, 2, shape,
                    "dtype F32, expected F16");
    expect_mismatch("wrong dims", &f, path, "head.weight", CAE_DT_F32, 2, wrong,
                    "shape [3, 2], expected [2, 3]");
    expect_mismatch("wrong ndim", &f, path, "head.weight", CAE_DT_F32, 3, longer,
                    "shape [3, 2], expected [3, 2, 1]");
    expect_mismatch("scalar vs vector", &f, path, "scale", CAE_DT_F32, 1, shape,
                    "shape [], expected [3]");
    expect_mismatch("missing", &f, path, "head.bias", CAE_DT_F32, 1, shape,
                    "not found (the file has 2 tensors)");
    expect_mismatch("NULL shape", &f, path, "head.weight", CAE_DT_F32, 2, NULL,
                    "invalid argument");
    cae_st_free(&f);
}
END_TEST

/* ---- writer refusals ------------------------------------------------------------ */

START_TEST(test_writer_refuses)
{
    cae_st_writer *w = cae_st_writer_new();
    const int64_t ok[1] = {2}, neg[2] = {2, -3}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int64_t huge[3] = {INT64_C(1) << 30, INT64_C(1) << 30, 4};   /* 2^62 elements */
    const unsigned char data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *path = tpath("w.safetensors");
    static const struct {
        const char *what, *name;
        int dtype, ndim, shape; /* shape: 0 ok, 1 neg, 2 nine, 3 huge */
        int null_data;
        const char *tensor, *fragment;
    } cases[] = {
        {"duplicate", "a", CAE_DT_U8, 1, 0, 0, "a", "added twice"},
        {"reserved name", "__metadata__", CAE_DT_U8, 1, 0, 0, "__metadata__", "not a usable tensor name"},
        {"not UTF-8", "bad\xff", CAE_DT_U8, 1, 0, 0, NULL, "not a usable tensor name"},
        {"negative dim", "n", CAE_DT_U8, 2, 1, 0, "n", "shape[1] is -3, below 0"},
        {"9 dims", "n", CAE_DT_U8, 9, 2, 0, "n", "ndim 9 is invalid"},
        {"negative ndim", "n", CAE_DT_U8, -1, 0, 0, "n", "ndim -1 is invalid"},
        {"bad dtype", "n", 42, 1, 0, 0, "n", "invalid dtype 42"},
        {"byte count overflows", "n", CAE_DT_F64, 3, 3, 0, "n", "needs more bytes than fit in memory"},
        {"NULL data", "n", CAE_DT_U8, 1, 0, 1, "n", "data is NULL but the tensor holds 2 bytes"},
    };
    cae_st_file f;
    char *err;
    int rc;

    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(cae_st_writer_add(w, "a", CAE_DT_U8, 1, ok, data), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t *shape = cases[i].shape == 1 ? neg : cases[i].shape == 2 ? nine
                               : cases[i].shape == 3 ? huge : ok;
        capture_begin(tmpdir);
        rc = cae_st_writer_add(w, cases[i].name, (cae_dtype)cases[i].dtype, cases[i].ndim, shape,
                               cases[i].null_data ? NULL : data);
        err = capture_end();
        ck_assert_msg(rc == -1, "%s: add returned %d", cases[i].what, rc);
        assert_one_line(cases[i].what, err, "safetensors writer", cases[i].tensor, cases[i].fragment);
        free(err);
    }
    capture_begin(tmpdir);
    rc = cae_st_writer_meta(w, "k", "v");
    rc += cae_st_writer_meta(w, "k", "again");
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    assert_one_line("metadata twice", err, "safetensors writer", NULL, "metadata 'k' set twice");
    free(err);
    /* NULL data is fine for a tensor with no bytes. */
    ck_assert_int_eq(cae_st_writer_add(w, "none", CAE_DT_F32, 2, (const int64_t[]){0, 5}, NULL), 0);

    /* The refusals left the writer as it was. */
    ck_assert_int_eq(cae_st_writer_write(w, path), 0);
    cae_st_writer_free(w);
    ck_assert_int_eq(cae_st_read(&f, path), 0);
    ck_assert_uint_eq(f.n_tensors, 2);
    ck_assert_str_eq(f.tensors[0].name, "a");
    ck_assert_mem_eq(f.tensors[0].data, data, 2);
    ck_assert_str_eq(f.tensors[1].name, "none");
    ck_assert_uint_eq(f.n_meta, 1);
    ck_assert_str_eq(cae_st_meta(&f, "k"), "v");
    cae_st_free(&f);
}
END_TEST

/* ---- atomic writes ------------------------------------------------------------- */

/* A writer holding one tensor of n bytes. */
static cae_st_writer *writer_of(size_t n)
{
    cae_st_writer *w = cae_st_writer_new();
    unsigned char *d = malloc(n);
    int64_t shape[1] = {(int64_t)n};
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(d);
    memset(d, 0x5a, n);
    ck_assert_int_eq(cae_st_writer_add(w, "big", CAE_DT_U8, 1, shape, d), 0);
    free(d);
    return w;
}

static const char old_text[] = "the old checkpoint";

static void assert_old_intact(const char *path)
{
    size_t len = 0;
    unsigned char *now = slurp(path, &len);
    ck_assert_ptr_nonnull(now);
    ck_assert_uint_eq(len, sizeof old_text);
    ck_assert_mem_eq(now, old_text, sizeof old_text);
    free(now);
}

START_TEST(test_atomic_readonly_folder)
{
    char dir[8192];
    const char *path;
    cae_st_writer *w = writer_of(64);
    char *err;
    int rc, as_nobody = geteuid() == 0;

    snprintf(dir, sizeof dir, "%s", tpath("ro"));
    path = tpath("ro/ckpt.safetensors");
    ck_assert(mkdir(dir, 0700) == 0);
    put_bytes(path, old_text, sizeof old_text);
    ck_assert(chmod(dir, 0555) == 0);
    /* Root writes anywhere: drop to nobody for the write, so the folder's
       permissions count. The folders above must let nobody through. */
    if (as_nobody)
        ck_assert(chmod(tmpdir, 0755) == 0);
    capture_begin(tmpdir);
    if (as_nobody && seteuid(65534) != 0) {
        err = capture_end();
        free(err);
        ck_abort_msg("seteuid(65534): %s", strerror(errno));
    }
    rc = cae_st_writer_write(w, path);
    if (as_nobody && seteuid(0) != 0)
        abort();   /* cannot go on as the wrong user */
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    assert_one_line("read-only folder", err, path, NULL, "Permission denied");
    ck_assert_msg(strstr(err, "cannot create") != NULL, "%s", err);
    free(err);
    assert_old_intact(path);
    ck_assert_uint_eq(count_entries(dir), 1);
    cae_st_writer_free(w);
}
END_TEST

START_TEST(test_atomic_path_is_directory)
{
    const char *path = tpath("ckpt.safetensors");
    cae_st_writer *w = writer_of(64);
    struct stat sb;
    char *err;
    int rc;

    ck_assert(mkdir(path, 0700) == 0);
    put_bytes(tpath("ckpt.safetensors/inside"), old_text, sizeof old_text);
    capture_begin(tmpdir);
    rc = cae_st_writer_write(w, path);
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    assert_one_line("path is a directory", err, path, NULL, "cannot rename the temporary file over it");
    free(err);
    ck_assert(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    assert_old_intact(tpath("ckpt.safetensors/inside"));
    ck_assert_uint_eq(count_entries(tmpdir), 1);   /* the temporary is gone */

    /* An empty directory too: rename(2) must not replace it either. */
    ck_assert(unlink(tpath("ckpt.safetensors/inside")) == 0);
    capture_begin(tmpdir);
    rc = cae_st_writer_write(w, path);
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    assert_one_line("path is an empty directory", err, path, NULL, "cannot rename");
    free(err);
    ck_assert(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    ck_assert_uint_eq(count_entries(tmpdir), 1);
    cae_st_writer_free(w);
}
END_TEST

/* A write that fails halfway (file size limit, as a full disk would):
   the old file stays and the partial temporary is removed. */
START_TEST(test_atomic_write_fails_midway)
{
    const char *path = tpath("ckpt.safetensors");
    cae_st_writer *w = writer_of(1 << 20);
    struct rlimit old, lim;
    void (*old_handler)(int);
    char *err;
    int rc;

    put_bytes(path, old_text, sizeof old_text);
    ck_assert(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 4096;
    old_handler = signal(SIGXFSZ, SIG_IGN);
    ck_assert(old_handler != SIG_ERR);
    capture_begin(tmpdir);
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    rc = cae_st_writer_write(w, path);
    ck_assert(setrlimit(RLIMIT_FSIZE, &old) == 0);
    err = capture_end();
    ck_assert(signal(SIGXFSZ, old_handler) != SIG_ERR);
    ck_assert_int_eq(rc, -1);
    assert_one_line("file size limit", err, path, NULL, "File too large");
    free(err);
    assert_old_intact(path);
    ck_assert_uint_eq(count_entries(tmpdir), 1);
    cae_st_writer_free(w);
}
END_TEST

/* A stale temporary from a crashed run with the same pid does not block. */
START_TEST(test_atomic_stale_temporary)
{
    const char *path = tpath("ckpt.safetensors");
    char tmp[8192];
    cae_st_writer *w = writer_of(16);
    cae_st_file f;

    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    put_bytes(tmp, old_text, sizeof old_text);
    put_bytes(path, old_text, sizeof old_text);
    ck_assert_int_eq(cae_st_writer_write(w, path), 0);
    ck_assert_uint_eq(count_entries(tmpdir), 1);
    ck_assert_int_eq(cae_st_read(&f, path), 0);
    ck_assert_ptr_nonnull(cae_st_expect(&f, "big", CAE_DT_U8, 1, (const int64_t[]){16}));
    cae_st_free(&f);
    cae_st_writer_free(w);
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc;

    tc = tu_tcase(s, "round_trip", 0);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_dtype_table, test_round_trip, test_round_trip_empty, test_read_hand_made);

    tc = tu_tcase(s, "corrupt", 0);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_bad_raw, 0, (int)N_RAW);
    tcase_add_test(tc, test_bad_path);
    tcase_add_test(tc, test_pytorch_file);
    tcase_add_loop_test(tc, test_bad_header, 0, (int)N_BAD);
    tcase_add_test(tc, test_bad_header_cut);

    tc = tu_tcase(s, "expect_and_writer", 0);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_expect, test_writer_refuses);

    tc = tu_tcase(s, "atomic", 0);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_atomic_readonly_folder, test_atomic_path_is_directory,
                 test_atomic_write_fails_midway, test_atomic_stale_temporary);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(safetensors_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* tests/check/test_data.c: the decoder, the data sets and the loader.

   Decoding: every file under tests/data/images/decode/ against what Pillow
   made of it (expected/<name>.ppm, written by tests/data/make-images.py):
   exact for PNG, max abs difference <= 2 for JPEG; a YCCK JPEG made here
   with TurboJPEG; every bad file refused (return 1) with exactly one stderr
   line naming it, and the 20000x20000 headers refused before any pixel
   buffer is allocated.
   Data sets: the ImageFolder order equals torchvision's (folder-order.txt);
   folders without images refused; Fashion-MNIST opens, and its train and
   test splits by name (skipped when /usr/share/datasets/fashion-mnist is
   missing), and broken IDX files made here are refused.
   Loader: the same bytes for 0, 1 and 3 workers and rings of 1 and 4;
   steps per epoch; ranks of one epoch take disjoint samples; a resumed
   epoch equals the tail of a full one; epochs differ; an unusable image is
   replaced and counted; misuse is refused. Finally images/s of decode +
   augment on Fashion-MNIST with 1 and 2 workers (printed). */
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "tests/common/fixture.h"

#include "tests/common/capture.h"
#include "tests/common/scratch.h"

#include "tests/common/hostutil.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[4096];
static char images[4096]; /* $CAE_TOP_SRCDIR/tests/data/images */

/* ---- fixture and helpers ---------------------------------------------------- */

static void setup(void)
{
    scratch_make(tmpdir, sizeof tmpdir, "data");
    tu_src_path(images, sizeof images, "tests/data/images");
}

static void teardown(void)
{
    capture_abandon(); /* a test failed while capturing */
    scratch_remove(tmpdir);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    n = ftell(f);
    ck_assert(n >= 0);
    ck_assert(fseek(f, 0, SEEK_SET) == 0);
    buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert(fwrite(data, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}

/* snprintf into a path buffer, asserting nothing was cut off */
static void pathf(char *buf, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void pathf(char *buf, size_t size, const char *format, ...)
{
    va_list ap;
    int n;
    va_start(ap, format);
    n = vsnprintf(buf, size, format, ap);
    va_end(ap);
    ck_assert_msg(n >= 0 && (size_t)n < size, "path too long: %s", buf);
}

/* err is one line that contains name and fragment */
static void assert_one_line(const char *err, const char *name, const char *fragment)
{
    const char *nl = strchr(err, '\n');
    ck_assert_msg(nl != NULL && nl[1] == '\0', "%s: want one stderr line, got: %s", name, err);
    ck_assert_msg(strstr(err, name) != NULL, "message does not name %s: %s", name, err);
    ck_assert_msg(strstr(err, fragment) != NULL, "message for %s lacks \"%s\": %s", name,
                  fragment, err);
}

/* A binary PPM (P6, maxval 255) as Pillow writes it. */
static unsigned char *read_ppm(const char *path, int *w, int *h)
{
    size_t len, off;
    char *buf = slurp(path, &len);
    int maxval, consumed = 0;
    unsigned char *rgb;

    ck_assert_msg(sscanf(buf, "P6 %d %d %d%n", w, h, &maxval, &consumed) == 3 && maxval == 255,
                  "%s: not a P6 PPM", path);
    off = (size_t)consumed + 1; /* one whitespace byte before the pixels */
    ck_assert_msg(len - off == (size_t)*w * (size_t)*h * 3, "%s: %zu pixel bytes for %dx%d", path,
                  len - off, *w, *h);
    rgb = malloc(len - off);
    ck_assert(rgb != NULL);
    memcpy(rgb, buf + off, len - off);
    free(buf);
    return rgb;
}

static int max_abs_diff(const unsigned char *a, const unsigned char *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static const char *const decode_files[] = {
    "rgb420.jpg",  "rgb444.jpg",       "rgb422.jpg",       "progressive.jpg", "tiny-1x1.jpg",
    "gray.jpg",    "cmyk.jpg",         "rgb.png",          "rgba.png",        "gray.png",
    "gray-alpha.png", "palette.png",   "palette-trns.png", "palette-2bit.png", "bilevel.png",
    "tiny-1x1.png", "rgb16.png",       "interlaced.png",   "gray16.png",
};

/* ---- decoding ---------------------------------------------------------------- */

START_TEST(test_decode_matches_pillow)
{
    cae_decoder *d = cae_decoder_new();
    cae_image img = {0};
    char path[8192];

    ck_assert(d != NULL);
    for (size_t i = 0; i < sizeof decode_files / sizeof *decode_files; i++) {
        const char *name = decode_files[i];
        int jpeg = strstr(name, ".jpg") != NULL, w, h, diff;
        unsigned char *want;

        pathf(path, sizeof path, "%s/expected/%s.ppm", images, name);
        want = read_ppm(path, &w, &h);
        pathf(path, sizeof path, "%s/decode/%s", images, name);
        ck_assert_msg(cae_decode_file(d, path, &img) == 0, "%s does not decode", name);
        ck_assert_msg(img.width == w && img.height == h, "%s: %dx%d, Pillow %dx%d", name, img.width,
                      img.height, w, h);
        diff = max_abs_diff(img.rgb, want, (size_t)w * (size_t)h * 3);
        ck_assert_msg(diff <= (jpeg ? 2 : 0), "%s: max abs difference %d from Pillow", name, diff);
        free(want);
    }
    cae_image_free(&img);
    cae_decoder_free(d);
}
END_TEST

/* cae_decode_memory gives what cae_decode_file gives; a reused image
 * buffer shrinks and grows without stale pixels. */
START_TEST(test_decode_memory_and_reuse)
{
    cae_decoder *d = cae_decoder_new();
    cae_image a = {0}, b = {0};
    char path[8192];
    const char *order[] = {"rgb444.jpg", "tiny-1x1.png", "palette.png", "cmyk.jpg", "rgb444.jpg"};

    ck_assert(d != NULL);
    for (size_t i = 0; i < 5; i++) {
        size_t len;
        char *data;
        pathf(path, sizeof path, "%s/decode/%s", images, order[i]);
        data = slurp(path, &len);
        ck_assert_int_eq(cae_decode_memory(d, order[i], (unsigned char *)data, len, &a), 0);
        cae_image_free(&b);
        ck_assert_int_eq(cae_decode_file(d, path, &b), 0);
        ck_assert_int_eq(a.width, b.width);
        ck_assert_int_eq(a.height, b.height);
        ck_assert(memcmp(a.rgb, b.rgb, (size_t)a.width * (size_t)a.height * 3) == 0);
        free(data);
    }
    ck_assert_uint_ge(a.cap, (size_t)40 * 24 * 3); /* kept from the largest */
    cae_image_free(&a);
    cae_image_free(&b);
    cae_decoder_free(d);
}
END_TEST

/* A JPEG TurboJPEG refuses (a lossless SOF3 frame, a 12-bit SOF0 frame)
 * must not poison the decoder: the good file decoded next by the same
 * decoder decodes, equals a fresh decoder's output and reports nothing. */
START_TEST(test_decode_after_refused_jpeg)
{
    cae_decoder *d = cae_decoder_new(), *fresh = cae_decoder_new();
    cae_image want = {0}, got = {0};
    char good[8192], *err;
    size_t len, sof = 0;
    unsigned char *data;

    ck_assert(d != NULL && fresh != NULL);
    pathf(good, sizeof good, "%s/decode/rgb444.jpg", images);
    ck_assert_int_eq(cae_decode_file(fresh, good, &want), 0);
    data = (unsigned char *)slurp(good, &len);
    for (size_t i = 2; i + 4 < len && !sof; i++)
        if (data[i] == 0xFF && data[i + 1] == 0xC0)
            sof = i;
    ck_assert_msg(sof > 0, "rgb444.jpg: no SOF0 marker");
    for (int variant = 0; variant < 2; variant++) {
        unsigned char *bad = malloc(len);
        ck_assert(bad != NULL);
        memcpy(bad, data, len);
        if (variant == 0)
            bad[sof + 1] = 0xC3; /* lossless */
        else
            bad[sof + 4] = 12; /* 12-bit samples */
        capture_begin(tmpdir);
        ck_assert_int_eq(cae_decode_memory(d, "refused.jpg", bad, len, &got), 1);
        err = capture_end();
        assert_one_line(err, "refused.jpg", "JPEG");
        free(err);
        capture_begin(tmpdir);
        ck_assert_int_eq(cae_decode_file(d, good, &got), 0);
        err = capture_end();
        ck_assert_msg(err[0] == '\0', "variant %d: stale report: %s", variant, err);
        free(err);
        ck_assert_int_eq(got.width, want.width);
        ck_assert_int_eq(got.height, want.height);
        ck_assert(memcmp(got.rgb, want.rgb, (size_t)want.width * (size_t)want.height * 3) == 0);
        free(bad);
    }
    free(data);
    cae_image_free(&want);
    cae_image_free(&got);
    cae_decoder_free(d);
    cae_decoder_free(fresh);
}
END_TEST

/* A YCCK JPEG (Pillow cannot write one): TurboJPEG compresses CMYK pixels
 * P into YCCK; Pillow would read them as inverted CMYK, i.e. RGB ~ P*K/255. */
START_TEST(test_decode_ycck)
{
    enum { W = 24, H = 18 };
    unsigned char cmyk[W * H * 4], *jpeg = NULL;
    unsigned long size = 0;
    int w, h, sub, cs, worst = 0;
    tjhandle tj = tjInitCompress();
    cae_decoder *d = cae_decoder_new();
    cae_image img = {0};

    ck_assert(tj != NULL && d != NULL);
    for (int i = 0; i < W * H; i++) {
        int x = i % W, y = i / W;
        cmyk[4 * i + 0] = (unsigned char)(40 + 8 * x);
        cmyk[4 * i + 1] = (unsigned char)(30 + 10 * y);
        cmyk[4 * i + 2] = (unsigned char)(200 - 5 * x);
        cmyk[4 * i + 3] = (unsigned char)(255 - 3 * y);
    }
    ck_assert_msg(tjCompress2(tj, cmyk, W, W * 4, H, TJPF_CMYK, &jpeg, &size, TJSAMP_444, 100,
                              TJFLAG_ACCURATEDCT) == 0,
                  "tjCompress2: %s", tjGetErrorStr2(tj));
    {
        tjhandle td = tjInitDecompress();
        ck_assert(td != NULL);
        ck_assert_int_eq(tjDecompressHeader3(td, jpeg, size, &w, &h, &sub, &cs), 0);
        ck_assert_int_eq(cs, TJCS_YCCK);
        tjDestroy(td);
    }
    ck_assert_int_eq(cae_decode_memory(d, "ycck.jpg", jpeg, size, &img), 0);
    ck_assert_int_eq(img.width, W);
    ck_assert_int_eq(img.height, H);
    for (int i = 0; i < W * H; i++)
        for (int c = 0; c < 3; c++) {
            int want = (cmyk[4 * i + c] * cmyk[4 * i + 3] + 127) / 255;
            int diff = abs(want - img.rgb[3 * i + c]);
            worst = diff > worst ? diff : worst;
        }
    ck_assert_msg(worst <= 4, "YCCK: max abs difference %d", worst);
    tjFree(jpeg);
    tjDestroy(tj);
    cae_image_free(&img);
    cae_decoder_free(d);
}
END_TEST

START_TEST(test_decode_bad_files)
{
    static const struct {
        const char *name, *fragment;
    } bad[] = {
        {"truncated.jpg", "Premature end"}, {"truncated.png", "truncated PNG"},
        {"empty.jpg", "empty file"},        {"text.jpg", "not a JPEG or PNG"},
        {"badcrc.png", "CRC"},              {"bomb.jpg", "over the limit"},
        {"bomb.png", "over the limit"},     {"missing.jpg", "No such file"},
        {".", "not a regular file"},
    };
    cae_decoder *d = cae_decoder_new();
    char path[8192], *err;

    ck_assert(d != NULL);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cae_image img = {0};
        int rc;
        pathf(path, sizeof path, "%s/bad/%s", images, bad[i].name);
        capture_begin(tmpdir);
        rc = cae_decode_file(d, path, &img);
        err = capture_end();
        ck_assert_msg(rc == 1, "%s: rc %d", bad[i].name, rc);
        assert_one_line(err, path, bad[i].fragment);
        if (strstr(bad[i].name, "bomb") != NULL)
            ck_assert_msg(img.cap == 0 && img.rgb == NULL, "%s: pixels allocated", bad[i].name);
        free(err);
        cae_image_free(&img);
    }
    cae_decoder_free(d);
}
END_TEST

/* ---- data sets ----------------------------------------------------------------- */

START_TEST(test_folder_order)
{
    cae_dataset *ds = NULL;
    cae_decoder *d = cae_decoder_new();
    cae_image img = {0};
    char root[8192], path[8192], want[8192], line[1024];
    size_t n = 0;
    FILE *f;

    ck_assert(d != NULL);
    pathf(root, sizeof root, "%s/folder", images);
    ck_assert_int_eq(cae_dataset_open(&ds, root), 0);
    pathf(path, sizeof path, "%s/folder-order.txt", images);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f) != NULL) {
        int label;
        char rel[1000];
        ck_assert(sscanf(line, "%d %999s", &label, rel) == 2);
        ck_assert_uint_lt(n, cae_dataset_len(ds));
        pathf(want, sizeof want, "%s/%s", root, rel);
        ck_assert_str_eq(cae_dataset_path(ds, n), want);
        ck_assert_int_eq(cae_dataset_label(ds, n), label);
        ck_assert_int_eq(cae_dataset_get(ds, n, d, &img), 0);
        ck_assert(img.width >= 12 && img.height >= 12);
        n++;
    }
    fclose(f);
    ck_assert_uint_eq(n, 14);
    ck_assert_uint_eq(cae_dataset_len(ds), n);
    ck_assert_uint_eq(cae_dataset_num_classes(ds), 3);
    pathf(want, sizeof want, "ImageFolder %s: 14 images, 3 classes", root);
    ck_assert_str_eq(cae_dataset_describe(ds), want);
    ck_assert_ptr_null(cae_dataset_path(ds, n));
    cae_dataset_free(ds);

    /* a trailing slash changes nothing */
    pathf(path, sizeof path, "%s/", root);
    ck_assert_int_eq(cae_dataset_open(&ds, path), 0);
    ck_assert_uint_eq(cae_dataset_len(ds), n);
    pathf(want, sizeof want, "%s/dog/d-x/y.jpg", root);
    ck_assert_str_eq(cae_dataset_path(ds, 12), want);
    cae_dataset_free(ds);
    cae_image_free(&img);
    cae_decoder_free(d);
}
END_TEST

/* mkdir tmpdir/rel */
static void mkdir_in_tmp(const char *rel)
{
    char path[8192];
    pathf(path, sizeof path, "%s/%s", tmpdir, rel);
    ck_assert_msg(mkdir(path, 0700) == 0, "mkdir %s: %s", path, strerror(errno));
}

static void expect_refused(const char *data_path, const char *name, const char *fragment)
{
    cae_dataset *ds = (cae_dataset *)1;
    char *err;
    int rc;

    capture_begin(tmpdir);
    rc = cae_dataset_open(&ds, data_path);
    err = capture_end();
    ck_assert_msg(rc == -1, "%s: opened", data_path);
    ck_assert_ptr_null(ds);
    assert_one_line(err, name, fragment);
    free(err);
}

START_TEST(test_folder_refused)
{
    char root[8192], path[8192];

    pathf(root, sizeof root, "%s/data", tmpdir);
    mkdir_in_tmp("data");
    expect_refused(root, root, "no class folders");
    /* files beside the class folders do not count */
    pathf(path, sizeof path, "%s/loose.jpg", root);
    write_file(path, "x", 1);
    expect_refused(root, root, "no class folders");
    /* a class folder with no image (as torchvision, an error) */
    mkdir_in_tmp("data/a");
    mkdir_in_tmp("data/b");
    mkdir_in_tmp("data/b/sub");
    pathf(path, sizeof path, "%s/a/x.png", root);
    write_file(path, "x", 1);
    pathf(path, sizeof path, "%s/b/sub/notes.txt", root);
    write_file(path, "x", 1);
    pathf(path, sizeof path, "%s/b", root);
    expect_refused(root, path, "class folder without images");
    /* a file, a missing path */
    pathf(path, sizeof path, "%s/a/x.png", root);
    expect_refused(path, path, "not a folder");
    pathf(path, sizeof path, "%s/nowhere", root);
    expect_refused(path, path, "No such file");
    /* with an image in b it opens, x.png's content notwithstanding */
    {
        cae_dataset *ds;
        pathf(path, sizeof path, "%s/b/sub/y.JPEG", root);
        write_file(path, "x", 1);
        ck_assert_int_eq(cae_dataset_open(&ds, root), 0);
        ck_assert_uint_eq(cae_dataset_len(ds), 2);
        ck_assert_int_eq(cae_dataset_label(ds, 1), 1);
        cae_dataset_free(ds);
    }
}
END_TEST

static int have_fashion_mnist(void)
{
    struct stat st;
    if (stat(CAE_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", &st) == 0)
        return 1;
    fprintf(stderr, "test_data: %s missing (Debian package dataset-fashion-mnist): skipped\n",
            CAE_FASHION_MNIST_DIR);
    return 0;
}

START_TEST(test_fashion_mnist)
{
    cae_dataset *ds;
    cae_image img = {0};
    long sum = 0;

    if (!have_fashion_mnist())
        return;
    ck_assert(unsetenv("CAE_FASHION_MNIST_DIR") == 0);
    ck_assert_int_eq(cae_dataset_open(&ds, NULL), 0);
    ck_assert_uint_eq(cae_dataset_len(ds), 60000);
    ck_assert_uint_eq(cae_dataset_num_classes(ds), 10);
    ck_assert_int_eq(cae_dataset_label(ds, 0), 9); /* an ankle boot */
    ck_assert_int_eq(cae_dataset_label(ds, 59999), 5);
    ck_assert_int_eq(cae_dataset_get(ds, 0, NULL, &img), 0);
    ck_assert_int_eq(img.width, 28);
    ck_assert_int_eq(img.height, 28);
    for (int p = 0; p < 28 * 28; p++) {
        ck_assert(img.rgb[3 * p] == img.rgb[3 * p + 1] && img.rgb[3 * p] == img.rgb[3 * p + 2]);
        sum += img.rgb[3 * p];
    }
    ck_assert_int_eq(sum, 76247);
    ck_assert_str_eq(cae_dataset_describe(ds),
                     "Fashion-MNIST " CAE_FASHION_MNIST_DIR ": 60000 images, 10 classes");
    cae_dataset_free(ds);
    ck_assert_int_eq(cae_dataset_open(&ds, ""), 0);
    ck_assert_uint_eq(cae_dataset_len(ds), 60000);
    cae_dataset_free(ds);
    cae_image_free(&img);
}
END_TEST

/* A gzip IDX file with the given header words and n payload bytes. */
static void write_idx(const char *name, const uint32_t *words, int nwords, size_t n)
{
    char path[8192];
    gzFile f;
    unsigned char hdr[16];
    unsigned char *payload = calloc(n > 0 ? n : 1, 1);

    ck_assert(payload != NULL);
    for (int i = 0; i < nwords; i++) {
        hdr[4 * i] = (unsigned char)(words[i] >> 24);
        hdr[4 * i + 1] = (unsigned char)(words[i] >> 16);
        hdr[4 * i + 2] = (unsigned char)(words[i] >> 8);
        hdr[4 * i + 3] = (unsigned char)words[i];
    }
    for (size_t i = 0; i < n; i++)
        payload[i] = (unsigned char)(i % 7);
    pathf(path, sizeof path, "%s/%s", tmpdir, name);
    f = gzopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(gzwrite(f, hdr, (unsigned)(4 * nwords)) == 4 * nwords);
    if (n > 0)
        ck_assert(gzwrite(f, payload, (unsigned)n) == (int)n);
    ck_assert(gzclose(f) == Z_OK);
    free(payload);
}

static void truncate_file(const char *name, size_t keep)
{
    char path[8192];
    pathf(path, sizeof path, "%s/%s", tmpdir, name);
    ck_assert(truncate(path, (off_t)keep) == 0);
}

START_TEST(test_idx_refused)
{
    static const char *img = "train-images-idx3-ubyte.gz", *lab = "train-labels-idx1-ubyte.gz";
    const uint32_t ih[4] = {2051, 5, 3, 4}, lh[2] = {2049, 5};
    const uint32_t bad_magic[4] = {2049, 5, 3, 4}, lh6[2] = {2049, 6};
    char ipath[8192], lpath[8192];
    cae_dataset *ds;
    cae_image im = {0};

    ck_assert(setenv("CAE_FASHION_MNIST_DIR", tmpdir, 1) == 0);
    pathf(ipath, sizeof ipath, "%s/%s", tmpdir, img);
    pathf(lpath, sizeof lpath, "%s/%s", tmpdir, lab);
    expect_refused(NULL, ipath, "No such file");
    /* a good pair opens */
    write_idx(img, ih, 4, 5 * 12);
    write_idx(lab, lh, 2, 5);
    ck_assert_int_eq(cae_dataset_open(&ds, NULL), 0);
    ck_assert_uint_eq(cae_dataset_len(ds), 5);
    ck_assert_uint_eq(cae_dataset_num_classes(ds), 5);
    ck_assert_int_eq(cae_dataset_get(ds, 1, NULL, &im), 0);
    ck_assert(im.width == 4 && im.height == 3 && im.rgb[0] == 12 % 7 && im.rgb[5] == 13 % 7);
    cae_dataset_free(ds);
    cae_image_free(&im);
    /* the images: bad magic, short payload, truncated gzip, extra data */
    write_idx(img, bad_magic, 4, 5 * 12);
    expect_refused(NULL, ipath, "magic 2049, expected 2051");
    write_idx(img, ih, 4, 5 * 12 - 1);
    expect_refused(NULL, ipath, "truncated");
    write_idx(img, ih, 4, 5 * 12);
    truncate_file(img, 30);
    expect_refused(NULL, ipath, "");
    write_idx(img, ih, 4, 5 * 12 + 1);
    expect_refused(NULL, ipath, "data after the last sample");
    /* the labels: missing, count differs, truncated */
    write_idx(img, ih, 4, 5 * 12);
    ck_assert(unlink(lpath) == 0);
    expect_refused(NULL, lpath, "No such file");
    write_idx(lab, lh6, 2, 6);
    expect_refused(NULL, lpath, "6 labels for the 5 images");
    write_idx(lab, lh, 2, 5);
    truncate_file(lab, 20);
    expect_refused(NULL, lpath, "");
    ck_assert(unsetenv("CAE_FASHION_MNIST_DIR") == 0);
}
END_TEST

/* ---- the loader ----------------------------------------------------------------- */

enum { S = 32, S2 = 16, G = 8 };

static cae_loader_cfg loader_cfg(const cae_dataset *ds, size_t batch, int workers, int ring)
{
    cae_loader_cfg c;
    memset(&c, 0, sizeof c);
    c.ds = ds;
    c.aug.input_size = S;
    c.aug.second_input_size = S2;
    c.aug.crop_min = 0.08;
    c.aug.crop_max = 1.0;
    c.aug.interp = CAE_FILTER_BICUBIC;
    c.aug.second_interp = CAE_FILTER_LANCZOS;
    c.aug.color_jitter = 0.4;
    c.aug.imagenet_mean_std = 1;
    c.mask.grid = G;
    c.mask.num_masking = 24;
    c.mask.block = 1;
    c.mask.min_per_block = 4;
    c.mask.max_per_block = 0;
    c.batch_size = batch;
    c.num_workers = workers;
    c.seed = 1234;
    c.rank = 0;
    c.world_size = 1;
    c.ring = ring;
    return c;
}

/* Everything a batch carries, concatenated: one epoch's worth. */
typedef struct {
    size_t steps, per_batch;
    unsigned char *bytes; /* [steps][per_batch] */
    size_t *index;        /* [steps][B] */
    size_t skipped;
} run;

static void run_free(run *r)
{
    free(r->bytes);
    free(r->index);
}

static run collect(const cae_loader_cfg *c, uint64_t epoch, uint64_t first_step)
{
    cae_loader *l;
    cae_batch *b;
    run r = {0};
    size_t B = c->batch_size, nv = B * 3 * S * S * 4, nt = B * 3 * S2 * S2 * 4, nm = B * G * G;
    int rc;

    ck_assert_int_eq(cae_loader_new(&l, c), 0);
    r.per_batch = nv + nt + nm;
    r.bytes = malloc(cae_loader_steps_per_epoch(l) * r.per_batch);
    r.index = malloc(cae_loader_steps_per_epoch(l) * B * sizeof(size_t));
    ck_assert(r.bytes != NULL && r.index != NULL);
    ck_assert_int_eq(cae_loader_start(l, epoch, first_step), 0);
    while ((rc = cae_loader_next(l, &b)) == 0) {
        unsigned char *o = r.bytes + r.steps * r.per_batch;
        ck_assert_uint_eq(b->batch, B);
        ck_assert_uint_eq(b->epoch, epoch);
        ck_assert_uint_eq(b->step, first_step + r.steps);
        ck_assert(b->wait_ms >= 0);
        memcpy(o, b->samples, nv);
        memcpy(o + nv, b->tok_view, nt);
        memcpy(o + nv + nt, b->mask, nm);
        for (size_t j = 0; j < B; j++) {
            int ones = 0;
            for (int p = 0; p < G * G; p++)
                ones += b->mask[j * G * G + p];
            ck_assert_int_eq(ones, c->mask.num_masking);
        }
        memcpy(r.index + r.steps * B, b->index, B * sizeof(size_t));
        r.skipped += b->skipped;
        r.steps++;
        cae_loader_release(l, b);
    }
    ck_assert_int_eq(rc, 1);
    ck_assert_int_eq(cae_loader_next(l, &b), 1); /* stays done */
    ck_assert_uint_eq(r.steps + first_step, cae_loader_steps_per_epoch(l));
    cae_loader_free(l);
    return r;
}

static cae_dataset *open_folder(void)
{
    cae_dataset *ds;
    char root[8192];
    pathf(root, sizeof root, "%s/folder", images);
    ck_assert_int_eq(cae_dataset_open(&ds, root), 0);
    return ds;
}

START_TEST(test_loader_workers_identical)
{
    cae_dataset *ds = open_folder();
    cae_loader_cfg c = loader_cfg(ds, 3, 0, 1);
    run base = collect(&c, 2, 0);
    const int workers[] = {0, 1, 3}, rings[] = {1, 4};

    ck_assert_uint_eq(base.steps, 14 / 3);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            c = loader_cfg(ds, 3, workers[i], rings[k]);
            run r = collect(&c, 2, 0);
            ck_assert_uint_eq(r.steps, base.steps);
            ck_assert_msg(memcmp(r.bytes, base.bytes, base.steps * base.per_batch) == 0,
                          "%d workers, ring %d: different batches", workers[i], rings[k]);
            ck_assert(memcmp(r.index, base.index, base.steps * 3 * sizeof(size_t)) == 0);
            run_free(&r);
        }
    /* the permutation's positions: sample j of step s is position s*B + j */
    for (size_t p = 0; p < base.steps * 3; p++)
        ck_assert_uint_eq(base.index[p], cae_sampler_index(1234, 2, 14, p));
    run_free(&base);
    cae_dataset_free(ds);
}
END_TEST

START_TEST(test_loader_steps_and_ranks)
{
    cae_dataset *ds = open_folder();
    const size_t cases[][3] = {{3, 1, 4}, {2, 3, 2}, {5, 2, 1}, {14, 1, 1}, {1, 14, 1}, {1, 1, 14}};
    cae_loader *l;
    cae_loader_cfg c;
    char *err;
    int seen[14] = {0};

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        c = loader_cfg(ds, cases[i][0], 1, 2);
        c.world_size = (int)cases[i][1];
        c.rank = c.world_size - 1;
        ck_assert_int_eq(cae_loader_new(&l, &c), 0);
        ck_assert_uint_eq(cae_loader_steps_per_epoch(l), cases[i][2]);
        cae_loader_free(l);
    }
    /* more than the data set per step */
    c = loader_cfg(ds, 5, 1, 2);
    c.world_size = 3;
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_new(&l, &c), -1);
    err = capture_end();
    assert_one_line(err, "--batch_size 5", "more than the ImageFolder");
    free(err);
    ck_assert_ptr_null(l);

    /* three ranks of one epoch: disjoint, at positions r + (s*B + j)*W */
    for (int r = 0; r < 3; r++) {
        c = loader_cfg(ds, 2, r, 2);
        c.world_size = 3;
        c.rank = r;
        run got = collect(&c, 5, 0);
        ck_assert_uint_eq(got.steps, 2);
        for (size_t p = 0; p < got.steps * 2; p++) {
            size_t idx = got.index[p];
            ck_assert_uint_lt(idx, 14);
            ck_assert_msg(!seen[idx], "index %zu taken twice", idx);
            seen[idx] = 1;
            ck_assert_uint_eq(idx, cae_sampler_index(1234, 5, 14, (size_t)r + p * 3));
        }
        run_free(&got);
    }
    cae_dataset_free(ds);
}
END_TEST

START_TEST(test_loader_resume_and_epochs)
{
    cae_dataset *ds = open_folder();
    cae_loader_cfg c = loader_cfg(ds, 2, 2, 3);
    run full = collect(&c, 7, 0), tail = collect(&c, 7, 4), other = collect(&c, 8, 0);
    size_t diff_index = 0;

    ck_assert_uint_eq(full.steps, 7);
    ck_assert_uint_eq(tail.steps, 3);
    ck_assert(memcmp(tail.bytes, full.bytes + 4 * full.per_batch, 3 * full.per_batch) == 0);
    ck_assert(memcmp(tail.index, full.index + 4 * 2, 3 * 2 * sizeof(size_t)) == 0);
    for (size_t s = 0; s < full.steps; s++)
        ck_assert_msg(memcmp(full.bytes + s * full.per_batch, other.bytes + s * full.per_batch,
                             full.per_batch) != 0,
                      "epochs 7 and 8 share batch %zu", s);
    for (size_t p = 0; p < 14; p++)
        diff_index += full.index[p] != other.index[p];
    ck_assert_uint_gt(diff_index, 7);
    run_free(&full);
    run_free(&tail);
    run_free(&other);

    /* the same loader restarted on an earlier step, mid-epoch */
    {
        cae_loader *l;
        cae_batch *b;
        run again = collect(&c, 7, 0);
        ck_assert_int_eq(cae_loader_new(&l, &c), 0);
        ck_assert_int_eq(cae_loader_start(l, 7, 0), 0);
        ck_assert_int_eq(cae_loader_next(l, &b), 0);
        cae_loader_release(l, b);
        ck_assert_int_eq(cae_loader_start(l, 7, 5), 0);
        ck_assert_int_eq(cae_loader_next(l, &b), 0);
        ck_assert_uint_eq(b->step, 5);
        ck_assert(memcmp(b->samples, again.bytes + 5 * again.per_batch, 2 * 3 * S * S * 4) == 0);
        cae_loader_release(l, b);
        cae_loader_free(l);
        run_free(&again);
    }
    cae_dataset_free(ds);
}
END_TEST

START_TEST(test_loader_misuse)
{
    cae_dataset *ds = open_folder();
    cae_loader_cfg c = loader_cfg(ds, 2, 1, 2);
    cae_loader *l;
    cae_batch *b1, *b2, *b3, *b4;
    char *err;

    ck_assert_int_eq(cae_loader_new(&l, &c), 0);
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_next(l, &b1), -1);
    err = capture_end();
    assert_one_line(err, "cae_loader_next", "not called");
    free(err);
    ck_assert_int_eq(cae_loader_start(l, 0, 0), 0);
    ck_assert_int_eq(cae_loader_next(l, &b1), 0);
    ck_assert_int_eq(cae_loader_next(l, &b2), 0);
    ck_assert_int_eq(cae_loader_next(l, &b4), 0); /* all ring + 1 batches held */
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_next(l, &b3), -1);
    err = capture_end();
    assert_one_line(err, "cae_loader_next", "all 3 batches of the ring are held");
    free(err);
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_start(l, 1, 0), -1);
    err = capture_end();
    assert_one_line(err, "cae_loader_start", "not released");
    free(err);
    /* released out of order, delivery stays in order */
    ck_assert_uint_eq(b4->step, 2);
    cae_loader_release(l, b2);
    ck_assert_int_eq(cae_loader_next(l, &b3), 0);
    ck_assert_uint_eq(b3->step, 3);
    cae_loader_release(l, b1);
    cae_loader_release(l, b3);
    cae_loader_release(l, b4);
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_start(l, 1, 8), -1);
    err = capture_end();
    assert_one_line(err, "cae_loader_start", "step 8 of an epoch of 7");
    free(err);
    ck_assert_int_eq(cae_loader_start(l, 1, 7), 0); /* nothing left: done at once */
    ck_assert_int_eq(cae_loader_next(l, &b1), 1);
    cae_loader_free(l);

    c.rank = 1;
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_new(&l, &c), -1);
    err = capture_end();
    assert_one_line(err, "rank 1", "world size 1");
    free(err);
    c = loader_cfg(ds, 2, 1, 2);
    c.aug.crop_min = 2;
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_new(&l, &c), -1);
    err = capture_end();
    assert_one_line(err, "--crop_min_size 2", "");
    free(err);
    c = loader_cfg(ds, 2, 1, 2);
    c.mask.num_masking = G * G + 1;
    capture_begin(tmpdir);
    ck_assert_int_eq(cae_loader_new(&l, &c), -1);
    err = capture_end();
    assert_one_line(err, "--num_mask_patches", "");
    free(err);
    cae_dataset_free(ds);
}
END_TEST

START_TEST(test_loader_replaces_unusable)
{
    /* four images, one of them truncated: B=2 takes every position */
    static const char *good[] = {"cat/a.JPG", "cat/B.png", "dog/d/x.png"};
    char path[8192], target[8192];
    cae_dataset *ds;
    size_t bad_index = SIZE_MAX, perm[4];
    run base = {0};

    mkdir_in_tmp("tree");
    mkdir_in_tmp("tree/only");
    for (int i = 0; i < 3; i++) {
        pathf(target, sizeof target, "%s/folder/%s", images, good[i]);
        if (target[0] != '/') { /* a relative CAE_TOP_SRCDIR */
            char cwd[4096];
            ck_assert(getcwd(cwd, sizeof cwd) != NULL);
            pathf(target, sizeof target, "%s/%s/folder/%s", cwd, images, good[i]);
        }
        pathf(path, sizeof path, "%s/tree/only/%c.png", tmpdir, 'a' + (i > 0 ? i + 1 : 0));
        ck_assert(symlink(target, path) == 0);
    }
    pathf(path, sizeof path, "%s/tree/only/b.jpg", tmpdir); /* second in order */
    pathf(target, sizeof target, "%s/bad/truncated.jpg", images);
    {
        size_t len;
        char *data = slurp(target, &len);
        write_file(path, data, len);
        free(data);
    }
    pathf(path, sizeof path, "%s/tree", tmpdir);
    ck_assert_int_eq(cae_dataset_open(&ds, path), 0);
    ck_assert_uint_eq(cae_dataset_len(ds), 4);
    for (size_t i = 0; i < 4; i++)
        if (strstr(cae_dataset_path(ds, i), "b.jpg") != NULL)
            bad_index = i;
    ck_assert_uint_eq(bad_index, 1);
    cae_sampler_permutation(99, 3, 4, perm);
    for (int w = 0; w < 3; w += 2) {
        cae_loader_cfg c = loader_cfg(ds, 2, w, 1);
        run r;
        char *err;
        c.seed = 99;
        capture_begin(tmpdir);
        r = collect(&c, 3, 0);
        err = capture_end();
        assert_one_line(err, "b.jpg", "Premature end");
        free(err);
        ck_assert_uint_eq(r.steps, 2);
        ck_assert_uint_eq(r.skipped, 1);
        for (size_t p = 0; p < 4; p++) {
            ck_assert_uint_ne(r.index[p], bad_index);
            /* the unusable position takes the next one's image */
            ck_assert_uint_eq(r.index[p], perm[p] != bad_index ? perm[p] : perm[(p + 1) % 4]);
        }
        if (w == 0)
            base = r;
        else {
            ck_assert(memcmp(r.bytes, base.bytes, 2 * r.per_batch) == 0);
            run_free(&r);
        }
    }
    run_free(&base);
    cae_dataset_free(ds);
}
END_TEST

/* Nothing usable: the loader gives up, next() fails, and so does a restart. */
START_TEST(test_loader_all_unusable)
{
    char path[8192], *err;
    cae_dataset *ds;
    cae_loader *l;
    cae_batch *b;

    mkdir_in_tmp("void");
    mkdir_in_tmp("void/c");
    for (int i = 0; i < 4; i++) {
        pathf(path, sizeof path, "%s/void/c/%d.jpg", tmpdir, i);
        write_file(path, "", 0);
    }
    pathf(path, sizeof path, "%s/void", tmpdir);
    ck_assert_int_eq(cae_dataset_open(&ds, path), 0);
    for (int w = 0; w < 3; w += 2) {
        cae_loader_cfg c = loader_cfg(ds, 2, w, 1);
        ck_assert_int_eq(cae_loader_new(&l, &c), 0);
        capture_begin(tmpdir); /* the workers start at once */
        ck_assert_int_eq(cae_loader_start(l, 0, 0), 0);
        ck_assert_int_eq(cae_loader_next(l, &b), -1);
        ck_assert_ptr_null(b);
        ck_assert_int_eq(cae_loader_next(l, &b), -1);
        ck_assert_int_eq(cae_loader_start(l, 1, 0), -1);
        err = capture_end();
        ck_assert_msg(strstr(err, "empty file") != NULL, "%s", err);
        ck_assert_msg(strstr(err, "4 unusable images in a row (epoch 0, step 0); giving up"),
                      "%s", err);
        ck_assert_msg(strstr(err, "stopped at an earlier error") != NULL, "%s", err);
        free(err);
        cae_loader_free(l);
    }
    cae_dataset_free(ds);
}
END_TEST

static double seconds(void)
{
    struct timespec ts;
    ck_assert(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* decode + augment + mask throughput on Fashion-MNIST at 32x32 */
START_TEST(test_loader_throughput)
{
    cae_dataset *ds;
    const size_t steps = 40, B = 64;

    if (!have_fashion_mnist())
        return;
    ck_assert(unsetenv("CAE_FASHION_MNIST_DIR") == 0);
    ck_assert_int_eq(cae_dataset_open(&ds, NULL), 0);
    for (int workers = 1; workers <= 2; workers++) {
        cae_loader_cfg c = loader_cfg(ds, B, workers, 4);
        cae_loader *l;
        cae_batch *b;
        double t0, t, wait = 0;
        c.aug.second_input_size = 0;
        c.aug.color_jitter = 0;
        c.aug.imagenet_mean_std = 0;
        c.mask.num_masking = 32;
        ck_assert_int_eq(cae_loader_new(&l, &c), 0);
        ck_assert_uint_eq(cae_loader_steps_per_epoch(l), 60000 / B);
        t0 = seconds();
        ck_assert_int_eq(cae_loader_start(l, 0, 0), 0);
        for (size_t s = 0; s < steps; s++) {
            ck_assert_int_eq(cae_loader_next(l, &b), 0);
            ck_assert_ptr_null(b->tok_view);
            wait += b->wait_ms;
            cae_loader_release(l, b);
        }
        t = seconds() - t0;
        printf("test_data: Fashion-MNIST -> 32x32, batch %zu, %d worker%s: %.0f images/s "
               "(%zu batches, waited %.0f ms)\n",
               B, workers, workers > 1 ? "s" : "", (double)(steps * B) / t, steps, wait);
        ck_assert(t > 0);
        cae_loader_free(l);
    }
    cae_dataset_free(ds);
}
END_TEST

/* ---- the Fashion-MNIST test split ---- */

START_TEST(test_fashion_mnist_split)
{
    const char *dir = getenv("CAE_FASHION_MNIST_DIR");
    char path[4096];
    cae_dataset *tr = NULL, *te = NULL;
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz",
             dir && *dir ? dir : CAE_FASHION_MNIST_DIR);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "Fashion-MNIST not installed: split test skipped\n");
        return;
    }
    ck_assert_int_eq(cae_dataset_open_split(&tr, NULL, "train"), 0);
    ck_assert_int_eq(cae_dataset_open_split(&te, "", "val"), 0);
    ck_assert_uint_eq(cae_dataset_len(tr), 60000);
    ck_assert_uint_eq(cae_dataset_len(te), 10000);
    ck_assert_uint_eq(cae_dataset_num_classes(te), 10);
    ck_assert_ptr_nonnull(strstr(cae_dataset_describe(te), "(t10k)"));
    /* the first test image's label is 9 (ankle boot) in the published set */
    ck_assert_int_eq(cae_dataset_label(te, 0), 9);
    cae_dataset_free(tr);
    cae_dataset_free(te);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc;

    tc = tu_tcase(s, "decode", 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_decode_matches_pillow, test_decode_memory_and_reuse,
                 test_decode_after_refused_jpeg, test_decode_ycck,
                 test_decode_bad_files);

    tc = tu_tcase(s, "dataset", 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_folder_order, test_folder_refused, test_fashion_mnist,
                 test_fashion_mnist_split, test_idx_refused);

    tc = tu_tcase(s, "loader", 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_loader_workers_identical, test_loader_steps_and_ranks,
                 test_loader_resume_and_epochs, test_loader_misuse, test_loader_replaces_unusable,
                 test_loader_all_unusable, test_loader_throughput);
    return s;
}

TU_MAIN(data_suite)

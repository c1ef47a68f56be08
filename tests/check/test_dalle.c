/* test_dalle.c: the DALL-E dVAE encoder against the PyTorch reference.
 *
 * The fixture (tests/fixtures/dalle-small, written by
 * tools/reference/dalle_reference.py --small: n_hid 8, vocab 40, 24x24,
 * batch 2, and 8x8, batch 3) gives weights, the view, the masked cells, the
 * float64 logits and their argmax. The logits must match to relative L2 1e-4 and the labels
 * equal the reference wherever its top two logits differ by more than 1e-3;
 * with the whole batch in one im2col matrix and one image at a time
 * (CAE_DALLE_COL_FLOATS=1), each with the CPU- and the GPU-shaped kernels
 * (CAE_DALLE_KERNELS). CAE_DALLE_FIXTURE=DIR runs the same
 * comparison on another fixture, such as the real width one made by
 * `dalle_reference.py --real --out DIR`.
 *
 * Bad inputs: a missing file, a missing, misshapen, mistyped or unexpected
 * tensor, and a bad batch or image size are each refused with one stderr
 * line naming the path or tensor. */
#include "tests/common/fixture.h"
#include "safetensors/safetensors.h"
#include "tests/common/testutil.h"
#include "tokenizer/dalle.h"

#include "tests/common/capture.h"
#include "tests/common/scratch.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[4096];

static void fixture_path(char *out, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);
    ck_assert(n > 0 && (size_t)n < cap);
}

static const char *small_dir(void)
{
    static char dir[4096];
    tu_src_path(dir, sizeof dir, "tests/fixtures/dalle-small");
    return dir;
}

/* Loading PATH must fail with exactly one line containing each of the
 * fragments (NULL ends the list). */
static void expect_refused(const char *path, size_t batch, int size, const char *frag1,
                           const char *frag2)
{
    cae_dalle *d = (cae_dalle *)&d;
    char *err;
    int rc;
    cae_ctx *ctx = tu_ctx();
    capture_begin(tmpdir);
    rc = cae_dalle_load(&d, ctx, path, batch, size);
    err = capture_end();
    ck_assert_msg(rc == -1, "load of %s succeeded", path);
    ck_assert_ptr_null(d);
    ck_assert_msg(strchr(err, '\n') != NULL && strchr(err, '\n')[1] == '\0',
                  "want one stderr line, got: %s", err);
    ck_assert_msg(strstr(err, frag1) != NULL, "line lacks '%s': %s", frag1, err);
    if (frag2 != NULL)
        ck_assert_msg(strstr(err, frag2) != NULL, "line lacks '%s': %s", frag2, err);
    free(err);
}

static void setup(void)
{
    scratch_make(tmpdir, sizeof tmpdir, "dalle");
}

static void teardown(void)
{
    capture_abandon(); /* a test failed while capturing */
    scratch_remove(tmpdir);
}

/* ---- conformance ---------------------------------------------------------- */

typedef struct {
    cae_st_file data;
    const cae_st_tensor *view, *mask_idx, *logits, *labels;
    size_t B, M;
    int S, V, G;
} fixture;

static void fixture_load(fixture *fx, const char *dir, const char *data)
{
    char path[4200];
    fixture_path(path, sizeof path, dir, data);
    tu_fx_read_path(&fx->data, path);
    fx->view = tu_fx_get(&fx->data, CAE_DT_F32, "view");
    fx->mask_idx = tu_fx_get(&fx->data, CAE_DT_I32, "mask_idx");
    fx->logits = tu_fx_get(&fx->data, CAE_DT_F32, "logits");
    fx->labels = tu_fx_get(&fx->data, CAE_DT_I32, "labels");
    ck_assert(fx->view->ndim == 4 && fx->view->shape[1] == 3);
    ck_assert(fx->mask_idx->ndim == 2);
    ck_assert(fx->logits->ndim == 4);
    fx->B = (size_t)fx->view->shape[0];
    fx->S = (int)fx->view->shape[2];
    fx->M = (size_t)fx->mask_idx->shape[1];
    fx->V = (int)fx->logits->shape[1];
    fx->G = (int)fx->logits->shape[2];
    ck_assert(fx->labels->numel == fx->B * fx->M);
}

/* Run the encoder on a fixture's data file and compare logits and labels. */
static void check_fixture(const char *dir, const char *data)
{
    cae_ctx *ctx = tu_ctx();
    fixture fx;
    cae_dalle *d = NULL;
    char path[4200];
    size_t n_logits, compared = 0;
    float *got, *got2;
    int *labels;
    const float *want;
    const int *want_labels, *idx;
    double num = 0, den = 0;
    tu_dbuf view, mask, lab;

    fixture_load(&fx, dir, data);
    fixture_path(path, sizeof path, dir, "weights.safetensors");
    ck_assert_int_eq(cae_dalle_load(&d, ctx, path, fx.B, fx.S), 0);
    ck_assert_int_eq(cae_dalle_vocab(d), fx.V);
    ck_assert_int_eq(cae_dalle_grid(d), fx.G);
    ck_assert_int_eq(fx.S / 8, fx.G);

    n_logits = fx.logits->numel;
    got = malloc(n_logits * sizeof *got);
    got2 = malloc(n_logits * sizeof *got2);
    labels = malloc(fx.B * fx.M * sizeof *labels);
    ck_assert(got && got2 && labels);
    view = tu_upload(fx.view->data, fx.view->numel);
    mask = tu_upload_int(fx.mask_idx->data, fx.mask_idx->numel);
    lab = tu_filled(fx.B * fx.M, -7.0f);

    ck_assert_int_eq(cae_dalle_labels(d, lab.buf, view.buf, mask.buf, fx.M), 0);
    ck_assert_int_eq(cae_read(ctx, got, cae_dalle_logits(d), n_logits * sizeof *got), 0);
    tu_download((float *)labels, &lab);

    want = fx.logits->data;
    for (size_t i = 0; i < n_logits; i++) {
        double e = (double)got[i] - want[i];
        num += e * e;
        den += (double)want[i] * want[i];
    }
    ck_assert_msg(isfinite(num) && sqrt(num / den) <= 1e-4, "%s/%s: logits relative L2 %.3g > 1e-4",
                  dir, data, sqrt(num / den));

    /* labels where the reference's top two are more than 1e-3 apart */
    want_labels = fx.labels->data;
    idx = fx.mask_idx->data;
    for (size_t b = 0; b < fx.B; b++)
        for (size_t j = 0; j < fx.M; j++) {
            size_t cells = (size_t)fx.G * fx.G, cell = (size_t)idx[b * fx.M + j];
            const float *l = want + b * fx.V * cells + cell;
            double top = -INFINITY, second = -INFINITY;
            for (int v = 0; v < fx.V; v++) {
                double x = l[(size_t)v * cells];
                if (x > top) {
                    second = top;
                    top = x;
                } else if (x > second) {
                    second = x;
                }
            }
            if (top - second <= 1e-3)
                continue;
            compared++;
            ck_assert_msg(labels[b * fx.M + j] == want_labels[b * fx.M + j],
                          "%s/%s: label %zu of image %zu: got %d want %d", dir, data, j, b,
                          labels[b * fx.M + j], want_labels[b * fx.M + j]);
        }
    printf("%s/%s: logits relative L2 %.3g; %zu of %zu labels compared (top-2 margin > 1e-3), "
           "all equal\n", dir, data, sqrt(num / den), compared, fx.B * fx.M);
    ck_assert_msg(2 * compared >= fx.B * fx.M, "%s/%s: only %zu of %zu labels clearly separated",
                  dir, data, compared, fx.B * fx.M);

    /* a second call gives the same bits: nothing left over from the first */
    ck_assert_int_eq(cae_dalle_labels(d, lab.buf, view.buf, mask.buf, fx.M), 0);
    ck_assert_int_eq(cae_read(ctx, got2, cae_dalle_logits(d), n_logits * sizeof *got2), 0);
    ck_assert(memcmp(got, got2, n_logits * sizeof *got) == 0);

    tu_free(&view);
    tu_free(&mask);
    tu_free(&lab);
    free(got);
    free(got2);
    free(labels);
    cae_dalle_free(d);
    cae_st_free(&fx.data);
}

static const char *conformance_dir(void)
{
    const char *env = getenv("CAE_DALLE_FIXTURE");
    return env && *env ? env : small_dir();
}

/* One conformance run with the im2col matrix capped at col_floats (NULL:
 * the default, the whole batch) and the kernel shapes forced to cpu or gpu. */
static void check_variant(const char *col_floats, const char *shapes)
{
    if (col_floats)
        ck_assert(setenv("CAE_DALLE_COL_FLOATS", col_floats, 1) == 0);
    else
        ck_assert(unsetenv("CAE_DALLE_COL_FLOATS") == 0);
    ck_assert(setenv("CAE_DALLE_KERNELS", shapes, 1) == 0);
    check_fixture(conformance_dir(), "data.safetensors");
    ck_assert(unsetenv("CAE_DALLE_COL_FLOATS") == 0);
    ck_assert(unsetenv("CAE_DALLE_KERNELS") == 0);
}

START_TEST(test_conformance_whole_batch_cpu_kernels)
{
    check_variant(NULL, "cpu");
}
END_TEST

START_TEST(test_conformance_whole_batch_gpu_kernels)
{
    check_variant(NULL, "gpu");
}
END_TEST

START_TEST(test_conformance_one_image_at_a_time_cpu_kernels)
{
    check_variant("1", "cpu");
}
END_TEST

START_TEST(test_conformance_one_image_at_a_time_gpu_kernels)
{
    check_variant("1", "gpu");
}
END_TEST

/* 8x8 images, batch 3: group 4 runs on 1x1 planes, narrower than the
 * 3x3 padding. */
START_TEST(test_conformance_8x8)
{
    ck_assert(setenv("CAE_DALLE_KERNELS", "cpu", 1) == 0);
    check_fixture(small_dir(), "data8.safetensors");
    ck_assert(setenv("CAE_DALLE_KERNELS", "gpu", 1) == 0);
    check_fixture(small_dir(), "data8.safetensors");
    ck_assert(unsetenv("CAE_DALLE_KERNELS") == 0);
}
END_TEST

/* A cell index outside the grid gives label -1; the rest are unaffected. */
START_TEST(test_index_out_of_range)
{
    cae_ctx *ctx = tu_ctx();
    fixture fx;
    cae_dalle *d = NULL;
    char path[4200];
    int idx[2 * 3], labels[2 * 3];
    const int *want = NULL;
    tu_dbuf view, mask, lab;

    fixture_load(&fx, small_dir(), "data.safetensors");
    ck_assert(fx.B == 2 && fx.M >= 1);
    want = fx.labels->data;
    fixture_path(path, sizeof path, small_dir(), "weights.safetensors");
    ck_assert_int_eq(cae_dalle_load(&d, ctx, path, fx.B, fx.S), 0);
    /* per image: the fixture's first masked cell, then -1 and G*G */
    for (int b = 0; b < 2; b++) {
        idx[3 * b] = ((const int *)fx.mask_idx->data)[b * fx.M];
        idx[3 * b + 1] = -1;
        idx[3 * b + 2] = fx.G * fx.G;
    }
    view = tu_upload(fx.view->data, fx.view->numel);
    mask = tu_upload_int(idx, 6);
    lab = tu_filled(6, 0.0f);
    ck_assert_int_eq(cae_dalle_labels(d, lab.buf, view.buf, mask.buf, 3), 0);
    tu_download((float *)labels, &lab);
    for (int b = 0; b < 2; b++) {
        ck_assert_int_eq(labels[3 * b], want[b * fx.M]);
        ck_assert_int_eq(labels[3 * b + 1], -1);
        ck_assert_int_eq(labels[3 * b + 2], -1);
    }
    tu_free(&view);
    tu_free(&mask);
    tu_free(&lab);
    cae_dalle_free(d);
    cae_st_free(&fx.data);
}
END_TEST

/* ---- refusals ------------------------------------------------------------- */

typedef enum { EDIT_DROP, EDIT_RESHAPE, EDIT_RETYPE, EDIT_ADD } edit_kind;

/* The small fixture's weights with one edit applied to tensor NAME, written
 * to tmpdir/weights.safetensors (its path in out). */
static void write_edited(char *out, size_t cap, const char *name, edit_kind kind)
{
    cae_st_file f;
    cae_st_writer *w = cae_st_writer_new();
    char path[4200];
    int found = kind == EDIT_ADD;
    fixture_path(path, sizeof path, small_dir(), "weights.safetensors");
    tu_fx_read_path(&f, path);
    ck_assert_ptr_nonnull(w);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const cae_st_tensor *t = &f.tensors[i];
        if (strcmp(t->name, name) != 0) {
            ck_assert_int_eq(cae_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
            continue;
        }
        found = 1;
        if (kind == EDIT_RESHAPE) {   /* same elements, in and out swapped */
            int64_t shape[4] = {t->shape[1], t->shape[0], t->shape[2], t->shape[3]};
            ck_assert(t->ndim == 4 && t->shape[0] != t->shape[1]);
            ck_assert_int_eq(cae_st_writer_add(w, t->name, t->dtype, 4, shape, t->data), 0);
        } else if (kind == EDIT_RETYPE) {
            ck_assert_int_eq(cae_st_writer_add(w, t->name, CAE_DT_I32, t->ndim, t->shape, t->data), 0);
        }
    }
    if (kind == EDIT_ADD) {
        const cae_st_tensor *t = cae_st_find(&f, "blocks.group_1.block_1.res_path.conv_1.w");
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(cae_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    ck_assert_msg(found, "fixture has no tensor %s", name);
    fixture_path(out, cap, tmpdir, "weights.safetensors");
    ck_assert_int_eq(cae_st_writer_write(w, out), 0);
    cae_st_writer_free(w);
    cae_st_free(&f);
}

START_TEST(test_missing_file)
{
    char path[4200];
    fixture_path(path, sizeof path, tmpdir, "no-such-encoder.safetensors");
    expect_refused(path, 2, 24, path, NULL);
}
END_TEST

START_TEST(test_missing_tensor)
{
    char path[4200];
    write_edited(path, sizeof path, "blocks.group_4.block_2.res_path.conv_3.b", EDIT_DROP);
    expect_refused(path, 2, 24, "'blocks.group_4.block_2.res_path.conv_3.b'", path);
    write_edited(path, sizeof path, "blocks.output.conv.w", EDIT_DROP);
    expect_refused(path, 2, 24, "'blocks.output.conv.w'", "not found");
    write_edited(path, sizeof path, "blocks.group_2.block_1.id_path.w", EDIT_DROP);
    expect_refused(path, 2, 24, "'blocks.group_2.block_1.id_path.w'", "not found");
}
END_TEST

START_TEST(test_wrong_shape)
{
    char path[4200];
    write_edited(path, sizeof path, "blocks.group_3.block_1.id_path.w", EDIT_RESHAPE);
    expect_refused(path, 2, 24, "'blocks.group_3.block_1.id_path.w'", "shape [16, 32, 1, 1]");
    write_edited(path, sizeof path, "blocks.input.w", EDIT_RESHAPE);
    expect_refused(path, 2, 24, "'blocks.input.w'", "[n_hid, 3, 7, 7]");
}
END_TEST

START_TEST(test_wrong_dtype)
{
    char path[4200];
    write_edited(path, sizeof path, "blocks.output.conv.b", EDIT_RETYPE);
    expect_refused(path, 2, 24, "'blocks.output.conv.b'", "I32");
}
END_TEST

START_TEST(test_unexpected_tensor)
{
    char path[4200];
    write_edited(path, sizeof path, "blocks.group_1.block_3.res_path.conv_1.w", EDIT_ADD);
    expect_refused(path, 2, 24, "'blocks.group_1.block_3.res_path.conv_1.w'", "unexpected");
}
END_TEST

/* Buffers too small for the batch (after their offsets) are refused before
 * anything runs. */
START_TEST(test_small_buffers)
{
    cae_ctx *ctx = tu_ctx();
    cae_dalle *d = NULL;
    char path[4200], *err;
    int rc;
    cl_mem view = NULL, small = NULL;
    fixture_path(path, sizeof path, small_dir(), "weights.safetensors");
    ck_assert_int_eq(cae_dalle_load(&d, ctx, path, 2, 24), 0);
    ck_assert_int_eq(cae_alloc(ctx, 2 * 3 * 24 * 24 * 4, &view), 0);
    ck_assert_int_eq(cae_alloc(ctx, 6 * 4, &small), 0);
    capture_begin(tmpdir);
    rc = cae_dalle_labels(d, (cae_buf){small, 0}, (cae_buf){view, 1}, (cae_buf){small, 0}, 3);
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, "view buffer holds 3455") != NULL && strstr(err, "3456 needed"), "%s", err);
    free(err);
    capture_begin(tmpdir);
    rc = cae_dalle_labels(d, (cae_buf){small, 0}, (cae_buf){view, 0}, (cae_buf){small, 1}, 3);
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, "mask_idx buffer holds 5") != NULL && strstr(err, "6 needed"), "%s", err);
    free(err);
    cae_release(&view);
    cae_release(&small);
    cae_dalle_free(d);
}
END_TEST

START_TEST(test_bad_sizes)
{
    char path[4200];
    fixture_path(path, sizeof path, small_dir(), "weights.safetensors");
    expect_refused(path, 2, 20, path, "multiple of 8");
    expect_refused(path, 0, 24, path, "batch");
}
END_TEST

static Suite *dalle_suite(void)
{
    Suite *s = suite_create("dalle");
    TCase *tc = tu_tcase(s, "dalle", 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_conformance_whole_batch_cpu_kernels,
                 test_conformance_whole_batch_gpu_kernels,
                 test_conformance_one_image_at_a_time_cpu_kernels,
                 test_conformance_one_image_at_a_time_gpu_kernels, test_conformance_8x8,
                 test_index_out_of_range, test_missing_file, test_missing_tensor, test_wrong_shape,
                 test_wrong_dtype, test_unexpected_tensor, test_small_buffers, test_bad_sizes);
    return s;
}

TU_MAIN(dalle_suite)

/* test_reconstruct.c: the reconstruction picture (src/train/reconstruct.c).
 *
 * A tiny pixel-target model draws 8 random 8-bit images; the PNG is decoded
 * again (src/data/image.c) and checked pixel by pixel at its scale: row 1
 * is the 8-bit input exactly, the visible patches of rows 2 and 3 too, the
 * masked patches of row 2 and the visible ones of row 4 are gray, and the
 * masked patches of rows 3 and 4 are the logits of a second step on the
 * same batch, de-normalized here (with --norm_pix_loss rescaled by the
 * patch's own mean and spread) and quantized. Also: where the held-out
 * images come from, and a PNG that cannot be written. Device suite: runs
 * with CK_FORK=no.
 */
#include "data/augment_internal.h"
#include "data/loader_args.h"
#include "data/masking.h"
#include "tests/common/capture.h"
#include "tests/common/hostutil.h"
#include "tests/common/scratch.h"
#include "tests/common/testutil.h"
#include "train/reconstruct.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S 16
#define P 4
#define G (S / P)
#define M 6
#define K (3 * P * P)
#define NIMG 8
#define SCALE 7 /* 112 / 16 */
#define CELL (S * SCALE)

static char dir[256];

static void scratch_setup(void)
{
    scratch_make(dir, sizeof dir, "recon");
}

static void scratch_teardown(void)
{
    capture_abandon();
    scratch_remove(dir);
}

static void tiny_args(cae_args *a, int norm_pix)
{
    char *argv[] = {"t", "--data_path", "unused", "--input_size", "16", "--patch_size", "4",
                    "--embed_dim", "16", "--depth", "1", "--num_heads", "2",
                    "--decoder_embed_dim", "16", "--regressor_depth", "1", "--decoder_depth", "1",
                    "--decoder_num_heads", "2", "--num_mask_patches", "6",
                    "--min_mask_patches_per_block", "2", "--mask_generator", "random",
                    "--norm_pix_loss"};
    int argc = (int)(sizeof argv / sizeof *argv);
    ck_assert_int_eq(cae_args_parse(a, norm_pix ? argc : argc - 1, argv), 0);
    ck_assert_int_eq(cae_args_choose_target(a, 0), 0);
    ck_assert_int_eq(cae_config_finish(&a->model), 0);
    ck_assert_int_eq(a->model.decoder_num_classes, K);
    ck_assert_int_eq(a->model.norm_pix_loss, norm_pix);
}

static unsigned char q8(float v)
{
    v = v < 0 ? 0 : (v > 1 ? 1 : v);
    return (unsigned char)floorf(v * 255.0f + 0.5f);
}

/* what the picture must show at input pixel (y, x), channel c, of image k */
static void expect_pixel(const unsigned char *px, const float *x, const unsigned char *mask,
                         const float *logits, int norm_pix, int y, int xx, int c,
                         unsigned char want[4])
{
    int p = (y / P) * G + xx / P, j = 0;
    unsigned char orig = px[(y * S + xx) * 3 + c], guess;
    double mu = 0, var = 0, spread = 1;
    float v;
    if (!mask[p]) {
        want[0] = want[1] = want[2] = orig;
        want[3] = CAE_RECON_GRAY;
        return;
    }
    for (int i = 0; i < p; i++)
        j += mask[i];
    if (norm_pix) {
        for (int e = 0; e < K; e++)
            mu += x[(e / (P * P)) * S * S + ((y / P) * P + e / P % P) * S + (xx / P) * P + e % P];
        mu /= K;
        for (int e = 0; e < K; e++) {
            double d =
                x[(e / (P * P)) * S * S + ((y / P) * P + e / P % P) * S + (xx / P) * P + e % P] - mu;
            var += d * d;
        }
        spread = sqrt(var / K + 1e-6);
    }
    v = logits[j * K + c * P * P + (y % P) * P + xx % P];
    if (norm_pix)
        v = (float)(v * spread + mu);
    guess = q8(v * 0.5f + 0.5f); /* Normalize(0.5, 0.5) undone */
    want[0] = orig;
    want[1] = CAE_RECON_GRAY;
    want[2] = want[3] = guess;
}

static void check_picture(int norm_pix)
{
    cae_args a;
    cae_recon r;
    cae_model m;
    cae_losses l;
    cae_mask_cfg mc;
    cae_decoder *dec;
    cae_image img = {0};
    char path[300];
    size_t masked = (size_t)NIMG * M * K;
    unsigned char *px = tu_alloc((size_t)NIMG * S * S * 3);
    float *logits = tu_alloc(masked * sizeof *logits);

    tiny_args(&a, norm_pix);
    ck_assert_int_eq(cae_recon_init(&r, &a, NIMG), 0);
    ck_assert_int_eq(r.scale, SCALE);
    ck_assert_int_eq(cae_mask_cfg_from_args(&a, &mc), 0);
    for (size_t i = 0; i < (size_t)NIMG * S * S * 3; i++)
        px[i] = (unsigned char)((i * 2654435761u) >> 13);
    for (int k = 0; k < NIMG; k++) {
        cae_normalize_view(px + (size_t)k * S * S * 3, S, 0, r.samples + (size_t)k * 3 * S * S);
        cae_mask_generate(&mc, 40 + (uint64_t)k, r.mask + k * G * G);
    }
    ck_assert_int_eq(cae_model_init(&m, tu_ctx(), &a.model, NIMG), 0);
    ck_assert_int_eq(cae_model_init_weights(&m, 9), 0);
    snprintf(path, sizeof path, "%s/picture.png", dir);
    ck_assert_int_eq(cae_recon_write(&r, &m, path), 0);

    /* the model's output for this batch, from a step of its own */
    ck_assert_int_eq(cae_model_set_inputs(&m, r.samples, r.mask), 0);
    ck_assert_int_eq(cae_model_step(&m, &l), 0);
    ck_assert_int_eq(cae_read(tu_ctx(), logits, m.logits, masked * sizeof *logits), 0);
    ck_assert_mem_eq(logits, r.pred, masked * sizeof *logits);

    dec = cae_decoder_new();
    ck_assert_ptr_nonnull(dec);
    ck_assert_int_eq(cae_decode_file(dec, path, &img), 0);
    ck_assert_int_eq(img.width, NIMG * CELL + (NIMG - 1) * CAE_RECON_GAP);
    ck_assert_int_eq(img.height, 4 * CELL + 3 * CAE_RECON_GAP);
    for (int k = 0; k < NIMG; k++)
        for (int y = 0; y < S; y++)
            for (int xx = 0; xx < S; xx++)
                for (int c = 0; c < 3; c++) {
                    unsigned char want[4];
                    expect_pixel(px + (size_t)k * S * S * 3, r.samples + (size_t)k * 3 * S * S,
                                 r.mask + k * G * G, logits + (size_t)k * M * K, norm_pix, y, xx,
                                 c, want);
                    for (int row = 0; row < 4; row++)
                        for (int d = 0; d < SCALE * SCALE; d++) {
                            int oy = row * (CELL + CAE_RECON_GAP) + y * SCALE + d / SCALE;
                            int ox = k * (CELL + CAE_RECON_GAP) + xx * SCALE + d % SCALE;
                            unsigned char got = img.rgb[((size_t)oy * img.width + ox) * 3 + c];
                            if (got != want[row])
                                ck_abort_msg("image %d row %d pixel (%d,%d) channel %d: %d, "
                                             "expected %d", k, row + 1, y, xx, c, got, want[row]);
                        }
                }
    /* the gaps are white */
    ck_assert_int_eq(img.rgb[(size_t)CELL * 3], 255);
    ck_assert_int_eq(img.rgb[((size_t)CELL * img.width) * 3], 255);
    cae_image_free(&img);
    cae_decoder_free(dec);
    cae_model_free(&m);
    cae_recon_free(&r);
}

START_TEST(test_picture)
{
    check_picture(0);
}
END_TEST

START_TEST(test_picture_norm_pix)
{
    check_picture(1);
}
END_TEST

/* a folder of one class holding n gray PNGs of side S */
static void png_folder(const char *root, int n)
{
    char path[600];
    cae_image img = {0};
    snprintf(path, sizeof path, "%s/c", root);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_int_eq(cae_image_reserve(&img, S, S), 0);
    memset(img.rgb, 90, S * S * 3);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/c/%d.png", root, i);
        ck_assert_int_eq(cae_png_write(path, &img), 0);
    }
    cae_image_free(&img);
}

START_TEST(test_heldout)
{
    char train[300], val[300];
    cae_dataset *ds;
    const char *what;
    snprintf(train, sizeof train, "%s/train", dir);
    snprintf(val, sizeof val, "%s/val", dir);
    png_folder(train, 3);
    /* no sibling val/: the training images */
    ck_assert_int_eq(cae_recon_open_heldout(&ds, train, &what), 0);
    ck_assert_ptr_nonnull(strstr(what, "training"));
    ck_assert_uint_eq(cae_dataset_len(ds), 3);
    cae_dataset_free(ds);
    png_folder(val, 2);
    ck_assert_int_eq(cae_recon_open_heldout(&ds, train, &what), 0);
    ck_assert_ptr_nonnull(strstr(what, "val"));
    ck_assert_uint_eq(cae_dataset_len(ds), 2);
    ck_assert_ptr_nonnull(strstr(cae_dataset_path(ds, 0), "/val/c/"));
    cae_dataset_free(ds);
    /* --data_path the val folder itself: no other held-out folder */
    ck_assert_int_eq(cae_recon_open_heldout(&ds, val, &what), 0);
    ck_assert_ptr_nonnull(strstr(what, "training"));
    cae_dataset_free(ds);
}
END_TEST

START_TEST(test_png_unwritable)
{
    char path[300], *err;
    cae_image img = {0};
    ck_assert_int_eq(cae_image_reserve(&img, 2, 2), 0);
    snprintf(path, sizeof path, "%s/missing/r.png", dir);
    capture_begin(dir);
    int rc = cae_png_write(path, &img);
    err = capture_end();
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_null(strchr(err, '\n') ? strchr(strchr(err, '\n') + 1, '\n') : NULL);
    free(err);
    cae_image_free(&img);
}
END_TEST

static Suite *reconstruct_suite(void)
{
    Suite *s = suite_create("reconstruct");
    TCase *tc = tu_tcase(s, "reconstruct", 300);
    tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
    TU_ADD_TESTS(tc, test_picture, test_picture_norm_pix, test_heldout, test_png_unwritable);
    return s;
}

TU_MAIN(reconstruct_suite)

/* reconstruct.c: reconstruction pictures (see reconstruct.h): the held-out
 * batch, one forward pass, the drawing and the PNG writer. */
#include "train/reconstruct.h"

#include "data/augment_internal.h"
#include "data/cls_transform.h"
#include "data/loader_args.h"
#include "data/masking.h"
#include "runtime/errors.h"
#include "runtime/files.h"
#include "train/train_log.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* the pixel size of the smallest enlarged input: 28 -> 4x, 224 -> 1x */
#define MIN_SHOWN 112

int cae_recon_init(cae_recon *r, const cae_args *a, int n)
{
    const cae_config *c = &a->model;
    memset(r, 0, sizeof *r);
    if (!c->pixel_target) {
        cae_errorf("reconstruction pictures need the pixel target: the DALL-E target has no "
                   "pixel decoder");
        return -1;
    }
    r->n = n;
    r->S = c->input_size;
    r->P = c->patch_size;
    r->G = r->S / r->P;
    r->M = c->num_mask_patches;
    r->K = 3 * r->P * r->P;
    r->scale = r->S >= MIN_SHOWN ? 1 : MIN_SHOWN / r->S;
    r->imagenet_mean_std = a->imagenet_default_mean_and_std;
    r->norm_pix = c->norm_pix_loss;
    r->samples = calloc((size_t)n * 3 * (size_t)r->S * (size_t)r->S, sizeof *r->samples);
    r->mask = calloc((size_t)n * (size_t)r->G * (size_t)r->G, 1);
    r->pred = calloc((size_t)n * (size_t)r->M * (size_t)r->K, sizeof *r->pred);
    if (!r->samples || !r->mask || !r->pred) {
        cae_recon_free(r);
        cae_errorf("reconstruction picture: out of memory");
        return -1;
    }
    return 0;
}

void cae_recon_free(cae_recon *r)
{
    free(r->samples);
    free(r->mask);
    free(r->pred);
    memset(r, 0, sizeof *r);
}

/* a folder, and not the same one as other */
static int other_dir(const char *path, const char *other)
{
    struct stat a, b;
    if (stat(path, &a) != 0 || !S_ISDIR(a.st_mode))
        return 0;
    return stat(other, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

int cae_recon_open_heldout(cae_dataset **ds, const char *data_path, const char **what)
{
    char *copy, sibling[4200];
    int n;
    if (!data_path || !data_path[0]) {
        *what = "Fashion-MNIST's test split";
        return cae_dataset_open_split(ds, NULL, "val");
    }
    /* dirname may modify its argument and ignores trailing slashes */
    copy = strdup(data_path);
    if (!copy) {
        cae_errorf("reconstruction picture: out of memory");
        return -1;
    }
    n = snprintf(sibling, sizeof sibling, "%s/val", dirname(copy));
    free(copy);
    if (n > 0 && (size_t)n < sizeof sibling && other_dir(sibling, data_path)) {
        *what = "the val folder beside --data_path";
        return cae_dataset_open(ds, sibling);
    }
    *what = "the training images (no val folder beside --data_path)";
    return cae_dataset_open(ds, data_path);
}

/* sample idx through the evaluation transform into view; 1 when unusable.
 * An image of the input size is taken as it is; where the official
 * transform would not resize a small input (crop_pct 0) but the image has
 * another size, its shorter side is resized to S and the centre cut. */
static int load_one(const cae_recon *r, const cae_dataset *ds, size_t idx, cae_decoder *dec,
                    cae_image *img, cae_augment_scratch *s, float *view)
{
    double crop_pct = cae_cls_eval_crop_pct(r->S);
    int rc = cae_dataset_get(ds, idx, dec, img);
    if (rc != 0)
        return rc;
    if (img->width == r->S && img->height == r->S)
        crop_pct = 0;
    else if (crop_pct == 0)
        crop_pct = 1;
    return cae_cls_eval_transform(r->S, crop_pct, CAE_FILTER_BICUBIC, r->imagenet_mean_std, img,
                                  s, view);
}

int cae_recon_load(cae_recon *r, const cae_dataset *ds, const cae_args *a, uint64_t seed)
{
    size_t len = cae_dataset_len(ds), per = 3 * (size_t)r->S * (size_t)r->S, idx = 0;
    size_t N = (size_t)r->G * (size_t)r->G;
    cae_mask_cfg mc;
    cae_decoder *dec = cae_decoder_new();
    cae_augment_scratch *s = cae_augment_scratch_new();
    cae_image img = {0};
    int rc = -1;
    if (!dec || !s) {
        cae_errorf("reconstruction picture: out of memory");
        goto out;
    }
    if (cae_mask_cfg_from_args(a, &mc) != 0)
        goto out;
    if (len < (size_t)r->n) {
        cae_errorf("reconstruction picture: %zu images, %d needed", len, r->n);
        goto out;
    }
    for (int k = 0; k < r->n; k++) {
        int got = 1;
        /* evenly spaced, so a sorted folder shows several classes */
        if (idx < (size_t)k * len / (size_t)r->n)
            idx = (size_t)k * len / (size_t)r->n;
        while (got == 1 && idx < len)
            got = load_one(r, ds, idx++, dec, &img, s, r->samples + (size_t)k * per);
        if (got != 0) {
            if (got == 1)
                cae_errorf("reconstruction picture: too few usable images");
            goto out;
        }
        cae_mask_generate(&mc, seed ^ ((uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL), r->mask + k * N);
    }
    rc = 0;
out:
    cae_image_free(&img);
    if (s)
        cae_augment_scratch_free(s);
    if (dec)
        cae_decoder_free(dec);
    return rc;
}

int cae_recon_predict(cae_recon *r, cae_model *m)
{
    cae_losses l;
    if (m->B != (size_t)r->n || m->cfg.decoder_num_classes != r->K) {
        cae_errorf("reconstruction picture: a model of batch %zu and %d outputs for %d images of "
                   "%d values", m->B, m->cfg.decoder_num_classes, r->n, r->K);
        return -1;
    }
    CAE_TRY(cae_model_set_inputs(m, r->samples, r->mask));
    CAE_TRY(cae_model_step(m, &l));
    return cae_read(m->ctx, r->pred, m->logits, (size_t)r->n * (size_t)r->M * (size_t)r->K * 4);
}

/* ---- drawing ---- */

static unsigned char quantize(float v)
{
    v = v < 0 ? 0 : (v > 1 ? 1 : v);
    return (unsigned char)floorf(v * 255.0f + 0.5f);
}

/* element e (channel, y, x) of the patch at (py, px): its index in [3,S,S] */
static size_t patch_elem(const cae_recon *r, size_t py, size_t px, size_t e)
{
    size_t S = (size_t)r->S, P = (size_t)r->P;
    return e / (P * P) * S * S + (py + e / P % P) * S + px + e % P;
}

/* One image's four rows of pixels: rows[row][c][y][x], S x S each. */
static void draw_one(const cae_recon *r, int k, const float mean[3], const float std[3],
                     unsigned char *rows)
{
    size_t S = (size_t)r->S, P = (size_t)r->P, G = (size_t)r->G, plane = S * S, K = (size_t)r->K;
    const float *x = r->samples + (size_t)k * 3 * plane;
    const unsigned char *mask = r->mask + (size_t)k * G * G;
    const float *pred = r->pred + (size_t)k * (size_t)r->M * K;
    size_t j = 0; /* masked patches so far: the prediction's row */
    for (size_t p = 0; p < G * G; p++) {
        size_t py = p / G * P, px = p % G * P;
        double mu = 0, var = 0, spread = 1;
        if (mask[p] && r->norm_pix) { /* the target patch's own statistics */
            for (size_t e = 0; e < K; e++)
                mu += x[patch_elem(r, py, px, e)];
            mu /= (double)K;
            for (size_t e = 0; e < K; e++) {
                double d = x[patch_elem(r, py, px, e)] - mu;
                var += d * d;
            }
            spread = sqrt(var / (double)K + 1e-6);
        }
        for (size_t e = 0; e < K; e++) {
            size_t c = e / (P * P), at = patch_elem(r, py, px, e);
            unsigned char orig = quantize(x[at] * std[c] + mean[c]), guess = CAE_RECON_GRAY;
            if (mask[p]) {
                float v = pred[j * K + e];
                if (r->norm_pix)
                    v = (float)(v * spread + mu);
                guess = quantize(v * std[c] + mean[c]);
            }
            rows[at] = orig;
            rows[3 * plane + at] = mask[p] ? CAE_RECON_GRAY : orig;
            rows[6 * plane + at] = mask[p] ? guess : orig;
            rows[9 * plane + at] = guess;
        }
        j += mask[p] != 0;
    }
}

int cae_recon_draw(const cae_recon *r, cae_image *out)
{
    int cell = r->S * r->scale, w = r->n * cell + (r->n - 1) * CAE_RECON_GAP;
    int h = 4 * cell + 3 * CAE_RECON_GAP;
    size_t S = (size_t)r->S, plane = S * S;
    float mean[3], std[3];
    unsigned char *rows = malloc(12 * plane);
    if (!rows || cae_image_reserve(out, w, h) != 0) {
        free(rows);
        cae_errorf("reconstruction picture: out of memory");
        return -1;
    }
    cae_normalize_stats(r->imagenet_mean_std, mean, std);
    memset(out->rgb, 255, (size_t)w * (size_t)h * 3);
    for (int k = 0; k < r->n; k++) {
        draw_one(r, k, mean, std, rows);
        for (int row = 0; row < 4; row++)
            for (int y = 0; y < cell; y++)
                for (int xx = 0; xx < cell; xx++) {
                    size_t src = (size_t)(y / r->scale) * S + (size_t)(xx / r->scale);
                    size_t oy = (size_t)(row * (cell + CAE_RECON_GAP) + y);
                    size_t ox = (size_t)(k * (cell + CAE_RECON_GAP) + xx);
                    for (int c = 0; c < 3; c++)
                        out->rgb[(oy * (size_t)w + ox) * 3 + (size_t)c] =
                            rows[(size_t)(row * 3 + c) * plane + src];
                }
    }
    free(rows);
    return 0;
}

/* ---- PNG ---- */

/* libpng's errors end here: the text is kept for the report */
static void png_fail(png_structp png, png_const_charp msg)
{
    char *text = png_get_error_ptr(png);
    snprintf(text, 200, "%s", msg);
    png_longjmp(png, 1);
}

static int png_to(FILE *f, const cae_image *img, char *why)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, why, png_fail, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(why, 200, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img->height; y++)
        png_write_row(png, img->rgb + (size_t)y * (size_t)img->width * 3);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int cae_png_write(const char *path, const cae_image *img)
{
    char tmp[4300], why[200] = "";
    FILE *f = cae_replace_open(path, "wb", tmp, sizeof tmp);
    if (!f) {
        cae_errorf("%s: %s", path, errno == ENAMETOOLONG ? "path too long" : strerror(errno));
        return -1;
    }
    if (png_to(f, img, why) != 0) {
        cae_replace_abort(f, tmp);
        cae_errorf("%s: cannot write the PNG: %s", path, why);
        return -1;
    }
    if (cae_replace_commit(f, tmp, path) != 0) {
        cae_errorf("%s: cannot write the PNG: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int cae_recon_write(cae_recon *r, cae_model *m, const char *path)
{
    cae_image img = {0};
    int rc;
    CAE_TRY(cae_recon_predict(r, m));
    rc = cae_recon_draw(r, &img);
    if (rc == 0)
        rc = cae_png_write(path, &img);
    cae_image_free(&img);
    return rc;
}

/* ---- cae-cl-train's pictures ---- */

struct cae_recon_state {
    cae_recon r;
    cae_model m;
    float **image; /* the parameters on their way from the training model */
    int have_model;
};

void cae_recon_state_free(cae_recon_state *st)
{
    if (!st)
        return;
    if (st->image)
        cae_arena_image_free(&st->m.table, st->image);
    if (st->have_model)
        cae_model_free(&st->m);
    cae_recon_free(&st->r);
    free(st);
}

static int state_new(cae_recon_state **out, cae_ctx *ctx, const cae_args *a)
{
    cae_dataset *ds = NULL;
    const char *what;
    size_t len;
    int rc = -1;
    cae_recon_state *st = calloc(1, sizeof *st);
    if (!st) {
        cae_errorf("reconstruction picture: out of memory");
        return -1;
    }
    if (cae_recon_open_heldout(&ds, a->data_path, &what) != 0)
        goto out;
    len = cae_dataset_len(ds);
    if (cae_recon_init(&st->r, a, len < CAE_RECON_IMAGES ? (int)len : CAE_RECON_IMAGES) != 0 ||
        cae_recon_load(&st->r, ds, a, CAE_RECON_SEED) != 0)
        goto out;
    if (cae_model_init(&st->m, ctx, &a->model, (size_t)st->r.n) != 0)
        goto out;
    st->have_model = 1;
    st->image = cae_arena_image_new(&st->m.table);
    if (!st->image) {
        cae_errorf("reconstruction picture: out of memory");
        goto out;
    }
    printf("reconstruction pictures: %d images of %s\n", st->r.n, what);
    rc = 0;
out:
    if (ds)
        cae_dataset_free(ds);
    if (rc != 0)
        cae_recon_state_free(st);
    else
        *out = st;
    return rc;
}

static int draw_checkpoint(cae_recon_state **st, cae_ctx *ctx, const cae_args *a,
                           const cae_model *train, const char *path)
{
    if (!*st)
        CAE_TRY(state_new(st, ctx, a));
    /* the same table (same configuration): a copy through the host */
    CAE_TRY(cae_arena_read_image(ctx, &train->table, &train->params, (*st)->image));
    CAE_TRY(cae_arena_write_image(ctx, &(*st)->m.table, &(*st)->m.params, (*st)->image));
    return cae_recon_write(&(*st)->r, &(*st)->m, path);
}

int cae_recon_checkpoint(cae_recon_state **st, cae_ctx *ctx, const cae_args *a,
                         const cae_model *train, const char *dir, uint64_t epoch)
{
    const char *off = getenv("CAE_NO_RECONSTRUCTION");
    char path[4200];
    double t0 = cae_now_ms();
    if (!a->model.pixel_target || (off && strcmp(off, "1") == 0))
        return 0;
    if (snprintf(path, sizeof path, "%s/reconstruction-%" PRIu64 ".png", dir, epoch) >=
        (int)sizeof path) {
        cae_errorf("--output_dir %s: path too long", dir);
        return -1;
    }
    /* a picture is a view of training, not part of it: a failure (said
     * above) costs the picture, not the run */
    if (draw_checkpoint(st, ctx, a, train, path) != 0) {
        cae_errorf("warning: no %s; training goes on", path);
        return 0;
    }
    printf("wrote %s (%.0f ms)\n", path, cae_now_ms() - t0);
    return 0;
}

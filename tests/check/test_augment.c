/* test_augment.c: resampling, color jitter, the augmentation and masking.
 *
 * Against Pillow (tests/data/resize-fixtures.safetensors, written by
 * tests/data/make-resize-fixtures.py): every filter up- and downscaling with
 * fractional boxes (at most 1 of 255 off per channel), ImageEnhance color
 * jitter for fixed factors and orders, and whole augmentations for fixed
 * plans (jitter, flip, crop, two resizes, ToTensor + Normalize / map_pixels).
 * Then the random parts: seeds decide everything and nothing else, flips
 * about half the time, crop boxes within the scale and ratio bounds (and
 * torchvision's fallback), the tokenizer view in [0.1, 0.9], normalization
 * constants; masks with exactly M ones for many seeds and configurations,
 * block masks in few connected regions, and the configurations refused. */
#include "data/augment.h"
#include "data/augment_internal.h"
#include "data/image.h"
#include "data/masking.h"
#include "tests/common/fixture.h"
#include "safetensors/safetensors.h"

#include "tests/common/hostutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixture access ---- */

static cae_st_file fx;

static void fx_open(void)
{
    tu_fx_read(&fx, "tests/data/resize-fixtures.safetensors");
}

static void fx_close(void)
{
    cae_st_free(&fx);
}

/* image.K named by the case's <prefix>.N.image into img */
static void fx_image(const char *prefix, int n, cae_image *img)
{
    const cae_st_tensor *idx = tu_fx_get(&fx, CAE_DT_I32, "%s.%d.image", prefix, n);
    const cae_st_tensor *t = tu_fx_get(&fx, CAE_DT_U8, "image.%d", tu_fx_i32(idx, 0));
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_int_eq(t->shape[2], 3);
    ck_assert_int_eq(cae_image_reserve(img, (int)t->shape[1], (int)t->shape[0]), 0);
    memcpy(img->rgb, t->data, t->nbytes);
}

static int max_abs_diff_u8(const unsigned char *a, const unsigned char *b, size_t n, size_t *ndiff)
{
    int worst = 0;
    *ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > worst)
            worst = d;
        *ndiff += d != 0;
    }
    return worst;
}

/* ---- resampling against Pillow ---- */

static const char *filter_name[] = {"nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"};

START_TEST(test_resize_pillow)
{
    int ncase = tu_fx_meta_int(&fx, "resize_cases");
    size_t total_diff = 0, total = 0;
    cae_image img = {0};
    ck_assert_int_ge(ncase, 60);
    for (int n = 0; n < ncase; n++) {
        const cae_st_tensor *box_t = tu_fx_get(&fx, CAE_DT_F64, "resize.%d.box", n);
        const cae_st_tensor *flt_t = tu_fx_get(&fx, CAE_DT_I32, "resize.%d.filter", n);
        const cae_st_tensor *out_t = tu_fx_get(&fx, CAE_DT_U8, "resize.%d.out", n);
        int oh = (int)out_t->shape[0], ow = (int)out_t->shape[1], worst;
        double box[4];
        unsigned char *got = malloc(out_t->nbytes);
        size_t ndiff;
        ck_assert_ptr_nonnull(got);
        fx_image("resize", n, &img);
        memcpy(box, box_t->data, sizeof box);
        ck_assert_int_eq(cae_resize(&img, box, ow, oh, (cae_filter)tu_fx_i32(flt_t, 0), got), 0);
        worst = max_abs_diff_u8(got, out_t->data, out_t->nbytes, &ndiff);
        ck_assert_msg(worst <= 1,
                      "case %d (%s, %dx%d box %g,%g,%g,%g -> %dx%d): max diff %d in %zu values",
                      n, filter_name[tu_fx_i32(flt_t, 0)], img.width, img.height, box[0], box[1],
                      box[2], box[3], ow, oh, worst, ndiff);
        total_diff += ndiff;
        total += out_t->nbytes;
        free(got);
    }
    printf("resize: %d Pillow cases, %zu of %zu values off by one\n", ncase, total_diff, total);
    cae_image_free(&img);
}
END_TEST

/* A strided view resizes like the same pixels copied out (the augmentation
 * resizes crops in place), and work buffers are reusable across sizes. */
START_TEST(test_resize_view)
{
    cae_image img = {0};
    cae_resize_work work;
    unsigned char *crop, *a, *b;
    const float box[4] = {0.25f, 1.5f, 19.0f, 13.75f};
    memset(&work, 0, sizeof work);
    fx_image("resize", 0, &img);
    ck_assert_int_ge(img.width, 30);
    crop = malloc(20 * 15 * 3);
    a = malloc(41 * 29 * 3);
    b = malloc(41 * 29 * 3);
    ck_assert(crop && a && b);
    for (int y = 0; y < 15; y++)
        memcpy(crop + y * 20 * 3, img.rgb + ((size_t)(y + 4) * img.width + 7) * 3, 20 * 3);
    for (int f = 0; f <= CAE_FILTER_LANCZOS; f++) {
        for (int rep = 0; rep < 2; rep++) {
            int ow = rep ? 41 : 9, oh = rep ? 29 : 6;
            ck_assert_int_eq(cae_resize_view(crop, 20, 15, 20 * 3, box, ow, oh, (cae_filter)f,
                                             &work, a), 0);
            ck_assert_int_eq(cae_resize_view(img.rgb + ((size_t)4 * img.width + 7) * 3, 20, 15,
                                             (size_t)img.width * 3, box, ow, oh, (cae_filter)f,
                                             &work, b), 0);
            ck_assert_msg(memcmp(a, b, (size_t)ow * oh * 3) == 0, "filter %s", filter_name[f]);
        }
    }
    cae_resize_work_free(&work);
    free(crop);
    free(a);
    free(b);
    cae_image_free(&img);
}
END_TEST

START_TEST(test_resize_refusals)
{
    cae_image img = {0};
    unsigned char out[64 * 3];
    const double neg[4] = {-1, 0, 4, 4}, big[4] = {0, 0, 9, 4}, empty[4] = {3, 0, 2, 4},
                 ok[4] = {0, 0, 8, 8};
    ck_assert_int_eq(cae_image_reserve(&img, 8, 8), 0);
    memset(img.rgb, 7, 8 * 8 * 3);
    ck_assert_int_eq(cae_resize(&img, neg, 4, 4, CAE_FILTER_BICUBIC, out), -1);
    ck_assert_int_eq(cae_resize(&img, big, 4, 4, CAE_FILTER_BICUBIC, out), -1);
    ck_assert_int_eq(cae_resize(&img, empty, 4, 4, CAE_FILTER_BICUBIC, out), -1);
    ck_assert_int_eq(cae_resize(&img, ok, 0, 4, CAE_FILTER_BICUBIC, out), -1);
    ck_assert_int_eq(cae_resize(&img, ok, 4, 4, (cae_filter)17, out), -1);
    /* a constant image stays constant under every filter */
    for (int f = 0; f <= CAE_FILTER_LANCZOS; f++) {
        memset(out, 0, sizeof out);
        ck_assert_int_eq(cae_resize(&img, ok, 5, 3, (cae_filter)f, out), 0);
        for (int i = 0; i < 5 * 3 * 3; i++)
            ck_assert_int_eq(out[i], 7);
    }
    cae_image_free(&img);
}
END_TEST

START_TEST(test_filter_parse)
{
    static const char *names[] = {"nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"};
    cae_filter f;
    for (int i = 0; i < 6; i++) {
        f = (cae_filter)99;
        ck_assert_int_eq(cae_filter_parse(names[i], &f), 0);
        ck_assert_int_eq((int)f, i);
    }
    ck_assert_int_eq(cae_filter_parse("random", &f), -1);
    ck_assert_int_eq(cae_filter_parse("cubic", &f), -1);
    ck_assert_int_eq(cae_filter_parse(NULL, &f), -1);
}
END_TEST

/* ---- color jitter against Pillow's ImageEnhance ---- */

START_TEST(test_jitter_pillow)
{
    int ncase = tu_fx_meta_int(&fx, "jitter_cases");
    cae_image img = {0};
    ck_assert_int_ge(ncase, 8);
    for (int n = 0; n < ncase; n++) {
        const cae_st_tensor *order = tu_fx_get(&fx, CAE_DT_I32, "jitter.%d.order", n);
        const cae_st_tensor *factor = tu_fx_get(&fx, CAE_DT_F32, "jitter.%d.factor", n);
        const cae_st_tensor *out = tu_fx_get(&fx, CAE_DT_U8, "jitter.%d.out", n);
        cae_jitter j;
        size_t ndiff;
        int worst;
        fx_image("jitter", n, &img);
        for (int k = 0; k < 3; k++) {
            j.order[k] = tu_fx_i32(order, (size_t)k);
            j.factor[k] = tu_fx_f32(factor, (size_t)k);
        }
        cae_jitter_image(&j, img.rgb, img.width, img.height);
        ck_assert_uint_eq(out->nbytes, (size_t)img.width * img.height * 3);
        worst = max_abs_diff_u8(img.rgb, out->data, out->nbytes, &ndiff);
        ck_assert_msg(worst <= 1, "jitter case %d (order %d%d%d, factors %g %g %g): max diff %d",
                      n, j.order[0], j.order[1], j.order[2], j.factor[0], j.factor[1],
                      j.factor[2], worst);
        ck_assert_msg(ndiff == 0, "jitter case %d: %zu values differ from Pillow", n, ndiff);
    }
    cae_image_free(&img);
}
END_TEST

/* ---- whole augmentations for fixed plans ---- */

START_TEST(test_augment_pillow)
{
    int ncase = tu_fx_meta_int(&fx, "augment_cases");
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    ck_assert_ptr_nonnull(s);
    ck_assert_int_ge(ncase, 4);
    for (int n = 0; n < ncase; n++) {
        const cae_st_tensor *plan_t = tu_fx_get(&fx, CAE_DT_I32, "augment.%d.plan", n);
        const cae_st_tensor *jit = tu_fx_get(&fx, CAE_DT_F32, "augment.%d.jitter", n);
        const cae_st_tensor *ord = tu_fx_get(&fx, CAE_DT_I32, "augment.%d.order", n);
        const cae_st_tensor *norm = tu_fx_get(&fx, CAE_DT_I32, "augment.%d.norm", n);
        const cae_st_tensor *v1 = tu_fx_get(&fx, CAE_DT_F32, "augment.%d.view", n);
        const cae_st_tensor *v2 = tu_fx_get(&fx, CAE_DT_F32, "augment.%d.view2", n);
        cae_augment_cfg cfg = {0};
        cae_augment_plan p;
        float *got1, *got2;
        double tol1, worst1 = 0, worst2 = 0;
        fx_image("augment", n, &img);
        memset(&p, 0, sizeof p);
        p.flip = tu_fx_i32(plan_t, 0);
        p.i = tu_fx_i32(plan_t, 1);
        p.jx = tu_fx_i32(plan_t, 2);
        p.h = tu_fx_i32(plan_t, 3);
        p.w = tu_fx_i32(plan_t, 4);
        cfg.input_size = tu_fx_i32(plan_t, 5);
        cfg.second_input_size = tu_fx_i32(plan_t, 6);
        cfg.interp = (cae_filter)tu_fx_i32(plan_t, 7);
        cfg.second_interp = (cae_filter)tu_fx_i32(plan_t, 8);
        cfg.crop_min = 0.08;
        cfg.crop_max = 1.0;
        cfg.imagenet_mean_std = tu_fx_i32(norm, 0);
        for (int k = 0; k < 3; k++) {
            p.j.order[k] = tu_fx_i32(ord, (size_t)k);
            p.j.factor[k] = tu_fx_f32(jit, (size_t)k);
            if (p.j.factor[k] != 1.0f)
                p.jitter = 1;
        }
        ck_assert_uint_eq(v1->numel, (size_t)3 * cfg.input_size * cfg.input_size);
        ck_assert_uint_eq(v2->numel, (size_t)3 * cfg.second_input_size * cfg.second_input_size);
        got1 = malloc(v1->nbytes);
        got2 = malloc(v2->nbytes);
        ck_assert(got1 && got2);
        ck_assert_int_eq(cae_augment_apply(&cfg, &img, &p, s, got1, got2), 0);
        for (size_t i = 0; i < v1->numel; i++)
            worst1 = fmax(worst1, fabs((double)got1[i] - tu_fx_f32(v1, i)));
        for (size_t i = 0; i < v2->numel; i++)
            worst2 = fmax(worst2, fabs((double)got2[i] - tu_fx_f32(v2, i)));
        /* one level of 255 (the resampling tolerance), through the std */
        tol1 = 1.0 / 255 / (cfg.imagenet_mean_std ? 0.224 : 0.5) + 1e-6;
        ck_assert_msg(worst1 <= tol1, "augment case %d: view differs by %g", n, worst1);
        ck_assert_msg(worst2 <= 0.8 / 255 + 1e-6, "augment case %d: view2 differs by %g", n,
                      worst2);
        /* in fact the same float operations give the same floats */
        ck_assert_msg(worst1 == 0 && worst2 == 0, "augment case %d: not bit-exact (%g, %g)", n,
                      worst1, worst2);
        free(got1);
        free(got2);
    }
    cae_augment_scratch_free(s);
    cae_image_free(&img);
}
END_TEST

/* ---- the random parts ---- */

static cae_augment_cfg default_cfg(void)
{
    cae_augment_cfg c;
    memset(&c, 0, sizeof c);
    c.input_size = 24;
    c.second_input_size = 12;
    c.crop_min = 0.08;
    c.crop_max = 1.0;
    c.interp = CAE_FILTER_BICUBIC;
    c.second_interp = CAE_FILTER_LANCZOS;
    c.color_jitter = 0.4;
    c.imagenet_mean_std = 1;
    return c;
}

static void random_image(cae_image *img, int w, int h, unsigned seed)
{
    ck_assert_int_eq(cae_image_reserve(img, w, h), 0);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        seed = seed * 1103515245u + 12345u;
        img->rgb[i] = (unsigned char)(seed >> 16);
    }
}

START_TEST(test_seed_determinism)
{
    cae_augment_cfg cfg = default_cfg();
    cae_image img = {0};
    cae_augment_scratch *s1 = cae_augment_scratch_new(), *s2 = cae_augment_scratch_new();
    size_t n1 = 3 * 24 * 24, n2 = 3 * 12 * 12;
    float *a1 = malloc(n1 * 4), *a2 = malloc(n2 * 4), *b1 = malloc(n1 * 4), *b2 = malloc(n2 * 4);
    int differ = 0;
    ck_assert(s1 && s2 && a1 && a2 && b1 && b2);
    random_image(&img, 57, 41, 3);
    for (uint64_t seed = 0; seed < 50; seed++) {
        ck_assert_int_eq(cae_augment(&cfg, &img, seed, s1, a1, a2), 0);
        /* another scratch, dirtied by another sample first */
        ck_assert_int_eq(cae_augment(&cfg, &img, seed + 1000, s2, b1, b2), 0);
        ck_assert_int_eq(cae_augment(&cfg, &img, seed, s2, b1, b2), 0);
        ck_assert_msg(memcmp(a1, b1, n1 * 4) == 0 && memcmp(a2, b2, n2 * 4) == 0,
                      "seed %llu: views differ between runs", (unsigned long long)seed);
        ck_assert_int_eq(cae_augment(&cfg, &img, seed + 1, s2, b1, b2), 0);
        differ += memcmp(a1, b1, n1 * 4) != 0;
    }
    ck_assert_int_eq(differ, 50);
    cae_augment_scratch_free(s1);
    cae_augment_scratch_free(s2);
    free(a1);
    free(a2);
    free(b1);
    free(b2);
    cae_image_free(&img);
}
END_TEST

START_TEST(test_flip_half)
{
    cae_augment_cfg cfg = default_cfg();
    cae_augment_plan p;
    int flips = 0;
    for (uint64_t seed = 0; seed < 1000; seed++) {
        cae_augment_plan_make(&cfg, 64, 48, seed, &p);
        flips += p.flip;
    }
    /* binomial(1000, 1/2): sd 15.8, so +-80 is 5 sd */
    ck_assert_msg(flips >= 420 && flips <= 580, "%d flips in 1000", flips);
}
END_TEST

/* A flipped plan mirrors the image: with the whole image as the crop and
 * S equal to its size, the resize is a copy, so the views are exact mirrors. */
START_TEST(test_flip_mirrors)
{
    cae_augment_cfg cfg = default_cfg();
    cae_augment_plan p;
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    float a[3 * 16 * 16], b[3 * 16 * 16];
    ck_assert_ptr_nonnull(s);
    random_image(&img, 16, 16, 11);
    cfg.input_size = 16;
    cfg.second_input_size = 0;
    memset(&p, 0, sizeof p);
    p.h = p.w = 16;
    ck_assert_int_eq(cae_augment_apply(&cfg, &img, &p, s, a, NULL), 0);
    p.flip = 1;
    ck_assert_int_eq(cae_augment_apply(&cfg, &img, &p, s, b, NULL), 0);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                ck_assert_float_eq(a[(c * 16 + y) * 16 + x], b[(c * 16 + y) * 16 + 15 - x]);
    /* and the unflipped view is the image itself, normalized */
    ck_assert_float_eq(a[0], ((float)img.rgb[0] / 255.0f - 0.485f) / 0.229f);
    cae_augment_scratch_free(s);
    cae_image_free(&img);
}
END_TEST

static void check_crops(int W, int H, double smin, double smax, int nseeds)
{
    cae_augment_cfg cfg = default_cfg();
    cae_augment_plan p;
    double amin = 1e9, amax = 0, rmin = 1e9, rmax = 0;
    cfg.crop_min = smin;
    cfg.crop_max = smax;
    for (uint64_t seed = 0; seed < (uint64_t)nseeds; seed++) {
        double frac, ratio;
        cae_augment_plan_make(&cfg, W, H, seed, &p);
        ck_assert(p.w > 0 && p.h > 0 && p.i >= 0 && p.jx >= 0);
        ck_assert(p.i + p.h <= H && p.jx + p.w <= W);
        frac = (double)p.w * p.h / ((double)W * H);
        ratio = (double)p.w / p.h;
        /* sides are rounded: allow their half-pixel error */
        ck_assert_msg(frac >= smin * (1 - 1.0 / p.w - 1.0 / p.h) &&
                          frac <= smax * (1 + 1.0 / p.w + 1.0 / p.h),
                      "crop %dx%d of %dx%d: area fraction %g outside [%g, %g]", p.w, p.h, W, H,
                      frac, smin, smax);
        ck_assert_msg(ratio >= 0.75 * (1 - 1.0 / p.w - 1.0 / p.h) &&
                          ratio <= 4.0 / 3 * (1 + 1.0 / p.w + 1.0 / p.h),
                      "crop %dx%d: ratio %g outside [3/4, 4/3]", p.w, p.h, ratio);
        amin = fmin(amin, frac);
        amax = fmax(amax, frac);
        rmin = fmin(rmin, ratio);
        rmax = fmax(rmax, ratio);
    }
    /* the whole ranges get used */
    ck_assert_msg(amin < smin + 0.1 * (smax - smin) && amax > smax - 0.2 * (smax - smin),
                  "area fractions only in [%g, %g]", amin, amax);
    ck_assert_msg(rmin < 0.8 && rmax > 1.25, "ratios only in [%g, %g]", rmin, rmax);
}

START_TEST(test_crop_bounds)
{
    check_crops(500, 375, 0.08, 1.0, 3000);
    check_crops(375, 500, 0.08, 1.0, 3000);
    check_crops(640, 640, 0.3, 0.5, 2000);
}
END_TEST

/* torchvision's fallback when 10 attempts fail: the central crop with the
 * ratio clamped. */
START_TEST(test_crop_fallback)
{
    cae_augment_cfg cfg = default_cfg();
    cae_augment_plan p;
    cfg.crop_min = 0.9;
    cfg.crop_max = 1.0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        cae_augment_plan_make(&cfg, 400, 50, seed, &p); /* too wide for any 4:3 crop */
        ck_assert_int_eq(p.h, 50);
        ck_assert_int_eq(p.w, 67); /* round(50 * 4/3) */
        ck_assert_int_eq(p.i, 0);
        ck_assert_int_eq(p.jx, (400 - 67) / 2);
        cae_augment_plan_make(&cfg, 50, 400, seed, &p); /* too tall */
        ck_assert_int_eq(p.w, 50);
        ck_assert_int_eq(p.h, 67); /* round(50 / (3/4)) */
        ck_assert_int_eq(p.i, (400 - 67) / 2);
        ck_assert_int_eq(p.jx, 0);
    }
}
END_TEST

START_TEST(test_jitter_plan)
{
    cae_augment_cfg cfg = default_cfg();
    cae_augment_plan p;
    int orders_seen[3][3] = {{0}};
    float lo = 1, hi = 1;
    cfg.color_jitter = 0.4;
    for (uint64_t seed = 0; seed < 600; seed++) {
        int seen = 0;
        cae_augment_plan_make(&cfg, 64, 64, seed, &p);
        ck_assert_int_eq(p.jitter, 1);
        for (int k = 0; k < 3; k++) {
            ck_assert(p.j.order[k] >= 0 && p.j.order[k] < 3);
            seen |= 1 << p.j.order[k];
            orders_seen[k][p.j.order[k]]++;
            ck_assert(p.j.factor[k] >= 0.6f && p.j.factor[k] <= 1.4f);
            lo = fminf(lo, p.j.factor[k]);
            hi = fmaxf(hi, p.j.factor[k]);
        }
        ck_assert_int_eq(seen, 7); /* a permutation */
    }
    ck_assert(lo < 0.62f && hi > 1.38f);
    for (int k = 0; k < 3; k++)
        for (int op = 0; op < 3; op++)
            ck_assert_msg(orders_seen[k][op] > 120, "op %d at place %d only %d times in 600", op,
                          k, orders_seen[k][op]);
    /* factors clamp at 0 below */
    cfg.color_jitter = 1.5;
    for (uint64_t seed = 0; seed < 100; seed++) {
        cae_augment_plan_make(&cfg, 64, 64, seed, &p);
        for (int k = 0; k < 3; k++)
            ck_assert(p.j.factor[k] >= 0.0f && p.j.factor[k] <= 2.5f);
    }
    cfg.color_jitter = 0;
    cae_augment_plan_make(&cfg, 64, 64, 5, &p);
    ck_assert_int_eq(p.jitter, 0);
}
END_TEST

START_TEST(test_view_ranges)
{
    cae_augment_cfg cfg = default_cfg();
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    float v1[3 * 24 * 24], v2[3 * 12 * 12];
    ck_assert_ptr_nonnull(s);
    random_image(&img, 90, 70, 5);
    cfg.color_jitter = 0.8;
    for (uint64_t seed = 0; seed < 100; seed++) {
        ck_assert_int_eq(cae_augment(&cfg, &img, seed, s, v1, v2), 0);
        for (size_t i = 0; i < sizeof v2 / sizeof v2[0]; i++) {
            double level = (v2[i] - 0.1) / 0.8 * 255;
            /* 0.8f * 1 + 0.1f rounds to 0.90000004f, as in torch */
            ck_assert_msg(v2[i] >= 0.1f && v2[i] <= 0.9f + 1e-7f, "view2 value %.9g", v2[i]);
            ck_assert(fabs(level - rint(level)) < 1e-3); /* an 8-bit level */
        }
        for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++)
            ck_assert(v1[i] >= (0 - 0.485f) / 0.229f - 1e-5 && v1[i] <= (1 - 0.406f) / 0.225f + 1e-5);
    }
    cae_augment_scratch_free(s);
    cae_image_free(&img);
}
END_TEST

/* A constant image: every view value is the normalized constant. */
START_TEST(test_normalization)
{
    static const float inet_mean[3] = {0.485f, 0.456f, 0.406f}, inet_std[3] = {0.229f, 0.224f, 0.225f};
    cae_augment_cfg cfg = default_cfg();
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    float v1[3 * 24 * 24], v2[3 * 12 * 12];
    const unsigned char rgb[3] = {200, 31, 117};
    ck_assert_ptr_nonnull(s);
    cfg.color_jitter = 0;
    ck_assert_int_eq(cae_image_reserve(&img, 33, 29), 0);
    for (int i = 0; i < 33 * 29; i++)
        memcpy(img.rgb + i * 3, rgb, 3);
    for (int inet = 0; inet < 2; inet++) {
        cfg.imagenet_mean_std = inet;
        ck_assert_int_eq(cae_augment(&cfg, &img, 77, s, v1, v2), 0);
        for (int c = 0; c < 3; c++) {
            float x = (float)rgb[c] / 255.0f;
            float want1 = inet ? (x - inet_mean[c]) / inet_std[c] : (x - 0.5f) / 0.5f;
            float want2 = 0.8f * x + 0.1f;
            for (int i = 0; i < 24 * 24; i++)
                ck_assert_float_eq_tol(v1[c * 24 * 24 + i], want1, 1e-6);
            for (int i = 0; i < 12 * 12; i++)
                ck_assert_float_eq_tol(v2[c * 12 * 12 + i], want2, 1e-6);
        }
    }
    /* the constants themselves: channel 0 of 200 with ImageNet mean/std */
    ck_assert_float_eq_tol(v1[0], (200 / 255.0 - 0.485) / 0.229, 1e-5);
    cae_augment_scratch_free(s);
    cae_image_free(&img);
}
END_TEST

START_TEST(test_augment_refusals)
{
    cae_augment_cfg cfg = default_cfg();
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    float v1[3 * 24 * 24], v2[3 * 12 * 12];
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(cae_augment_check(&cfg), 0);
    cfg.input_size = 0;
    ck_assert_int_eq(cae_augment_check(&cfg), -1);
    cfg = default_cfg();
    cfg.crop_min = 0.9;
    cfg.crop_max = 0.5;
    ck_assert_int_eq(cae_augment_check(&cfg), -1);
    cfg = default_cfg();
    cfg.color_jitter = -0.1;
    ck_assert_int_eq(cae_augment_check(&cfg), -1);
    cfg = default_cfg();
    cfg.second_interp = (cae_filter)9;
    ck_assert_int_eq(cae_augment_check(&cfg), -1);
    cfg = default_cfg();
    ck_assert_int_eq(cae_augment(&cfg, &img, 1, s, v1, v2), -1); /* empty image */
    random_image(&img, 1, 1, 9);                                 /* the smallest image works */
    ck_assert_int_eq(cae_augment(&cfg, &img, 1, s, v1, v2), 0);
    cae_augment_scratch_free(s);
    cae_image_free(&img);
}
END_TEST

/* ---- masking ---- */

static int count_ones(const unsigned char *m, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) {
        ck_assert(m[i] == 0 || m[i] == 1);
        c += m[i];
    }
    return c;
}

/* 4-connected components of the ones */
static int components(const unsigned char *m, int G)
{
    int label[1024], stack[1024], n = 0;
    ck_assert(G * G <= 1024);
    memset(label, 0, sizeof label);
    for (int s = 0; s < G * G; s++) {
        int top = 0;
        if (!m[s] || label[s])
            continue;
        n++;
        label[s] = n;
        stack[top++] = s;
        while (top > 0) {
            int c = stack[--top], y = c / G, x = c % G;
            int nb[4] = {y > 0 ? c - G : -1, y < G - 1 ? c + G : -1, x > 0 ? c - 1 : -1,
                         x < G - 1 ? c + 1 : -1};
            for (int k = 0; k < 4; k++)
                if (nb[k] >= 0 && m[nb[k]] && !label[nb[k]]) {
                    label[nb[k]] = n;
                    stack[top++] = nb[k];
                }
        }
    }
    return n;
}

START_TEST(test_mask_exact_count)
{
    static const cae_mask_cfg cfgs[] = {
        {14, 98, 1, 16, 0},  /* the official ViT-B/16 at 224 */
        {14, 75, 1, 16, 0},  {14, 98, 1, 16, 30}, {14, 196, 1, 16, 0}, {14, 1, 1, 16, 0},
        {8, 32, 1, 16, 0},   /* the Fashion-MNIST default: 32/4 */
        {8, 40, 1, 4, 8},    {8, 0, 1, 16, 0},    {7, 49, 1, 16, 0},  {2, 2, 1, 16, 0},
        {20, 200, 1, 300, 0}, /* min_per_block > M: uniform(a, b) with a > b */
        {14, 98, 0, 16, 0},  {8, 64, 0, 16, 0},   {1, 1, 0, 16, 0},   {5, 0, 0, 16, 0},
        {14, 98, 1, 0, 0},
    };
    unsigned char m[1024];
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        const cae_mask_cfg *cfg = &cfgs[c];
        int n = cfg->grid * cfg->grid;
        ck_assert_msg(cae_mask_check(cfg) == 0, "config %zu refused", c);
        for (uint64_t seed = 0; seed < 300; seed++) {
            cae_mask_generate(cfg, seed * 7919 + c, m);
            ck_assert_msg(count_ones(m, n) == cfg->num_masking,
                          "config %zu (G %d, M %d, block %d) seed %llu: %d ones", c, cfg->grid,
                          cfg->num_masking, cfg->block, (unsigned long long)seed,
                          count_ones(m, n));
        }
    }
}
END_TEST

START_TEST(test_mask_seeds)
{
    cae_mask_cfg cfg = {14, 98, 1, 16, 0};
    unsigned char a[196], b[196];
    int differ = 0;
    for (int block = 0; block < 2; block++) {
        cfg.block = block;
        for (uint64_t seed = 0; seed < 100; seed++) {
            cae_mask_generate(&cfg, seed, a);
            cae_mask_generate(&cfg, seed, b);
            ck_assert(memcmp(a, b, sizeof a) == 0);
            cae_mask_generate(&cfg, seed + 1, b);
            differ += memcmp(a, b, sizeof a) != 0;
        }
    }
    ck_assert_int_eq(differ, 200);
}
END_TEST

/* Few regions per block mask, many per random one; and the block masks'
 * statistics match the official generator's: tests/data/mask-stats.py runs
 * it (20000 masks, G 14, M 98, 16 per block): 1.323 regions per mask, the
 * corner cell masked 6.2% of the time, the centre 86.7%, the middle of the
 * top edge 27.3%. Bounds below are about 4 standard errors of 4000 masks. */
START_TEST(test_mask_regions)
{
    cae_mask_cfg blk = {14, 98, 1, 16, 0}, rnd = {14, 98, 0, 16, 0};
    unsigned char m[196];
    long sum_blk = 0, sum_rnd = 0;
    int worst = 0, n = 4000;
    double hits[196] = {0}, regions, corner, centre, edge;
    for (int seed = 0; seed < n; seed++) {
        int k;
        cae_mask_generate(&blk, (uint64_t)seed, m);
        k = components(m, 14);
        sum_blk += k;
        worst = k > worst ? k : worst;
        for (int i = 0; i < 196; i++)
            hits[i] += m[i];
        cae_mask_generate(&rnd, (uint64_t)seed, m);
        sum_rnd += components(m, 14);
    }
    regions = (double)sum_blk / n;
    corner = hits[0] / n;
    centre = hits[7 * 14 + 7] / n;
    edge = hits[7] / n;
    printf("masks: %.3f regions per block mask (worst %d), %.2f per random mask; cells masked: "
           "corner %.3f, centre %.3f, top middle %.3f\n",
           regions, worst, (double)sum_rnd / n, corner, centre, edge);
    ck_assert_msg(regions <= 2.0, "block masks: %.2f regions on average", regions);
    ck_assert_msg((double)sum_rnd / n >= 8.0, "random masks: %.2f regions on average",
                  (double)sum_rnd / n);
    ck_assert_msg(regions > 1.22 && regions < 1.43, "%.3f regions per mask, official 1.323",
                  regions);
    ck_assert_msg(corner > 0.045 && corner < 0.08, "corner masked %.3f, official 0.062", corner);
    ck_assert_msg(centre > 0.84 && centre < 0.89, "centre masked %.3f, official 0.867", centre);
    ck_assert_msg(edge > 0.245 && edge < 0.30, "top middle masked %.3f, official 0.273", edge);
}
END_TEST

START_TEST(test_mask_refusals)
{
    static const cae_mask_cfg bad[] = {
        {14, 197, 1, 16, 0}, /* M > G*G */
        {14, 197, 0, 16, 0}, {14, -1, 0, 16, 0}, {0, 0, 0, 16, 0}, {-3, 0, 1, 16, 0},
        {1, 1, 1, 16, 0},    /* no block fits a 1x1 grid */
        {2, 4, 1, 16, 0},    /* only 1x1 blocks fit, and they need area < 2.25 */
        {2, 3, 1, 16, 0},    {14, 98, 1, -2, 0},
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++)
        ck_assert_msg(cae_mask_check(&bad[c]) == -1, "config %zu accepted", c);
    /* even so, generate terminates with exactly M ones on an unfinishable one */
    {
        unsigned char m[4];
        cae_mask_generate(&bad[6], 3, m);
        ck_assert_int_eq(count_ones(m, 4), 4);
    }
}
END_TEST

static Suite *augment_suite(void)
{
    Suite *s = suite_create("augment");
    TCase *tc = tu_tcase(s, "pillow", 300);
    tcase_add_unchecked_fixture(tc, fx_open, fx_close);
    TU_ADD_TESTS(tc, test_resize_pillow, test_resize_view, test_jitter_pillow, test_augment_pillow);

    tc = tu_tcase(s, "random", 300);
    TU_ADD_TESTS(tc, test_resize_refusals, test_filter_parse, test_seed_determinism, test_flip_half,
                 test_flip_mirrors, test_crop_bounds, test_crop_fallback, test_jitter_plan,
                 test_view_ranges, test_normalization, test_augment_refusals);

    tc = tu_tcase(s, "masking", 300);
    TU_ADD_TESTS(tc, test_mask_exact_count, test_mask_seeds, test_mask_regions, test_mask_refusals);
    return s;
}

TU_MAIN(augment_suite)

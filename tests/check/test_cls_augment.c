/* test_cls_augment.c: fine-tuning's classification transforms.
 *
 * Against Pillow / torch (tests/fixtures/cls_augment/, written by
 * tools/reference/augment_cls_reference.py): each RandAugment op at several
 * magnitudes, signs, both level-function families, bilinear and bicubic
 * resampling and both fill colors, on three small images (timm's level
 * functions must give the same argument, the op the same pixels); the
 * evaluation transform (resize, centre crop with Python's rounding,
 * normalize); Mixup and CutMix for given lam and box (images, corrected
 * lam, smoothed targets).
 * Then the random parts: the --aa grammar and its refusals; the policy's op
 * choice, probability, magnitude noise and signs (by their statistics and
 * by matching every output to one of the possible single-op results);
 * RandomErasing's boxes (area and aspect ranges, nothing changed outside,
 * N(0, 1) inside); the training transform (determinism, flip); Mixup's
 * lam draws. The training transform's throughput at 224 is printed. */
#define _POSIX_C_SOURCE 200809L
#include "data/augment.h"
#include "data/augment_internal.h"
#include "data/cls_transform.h"
#include "data/image.h"
#include "data/mixup.h"
#include "data/randaug.h"
#include "data/rng.h"
#include "tests/common/fixture.h"
#include "safetensors/safetensors.h"

#include "tests/common/hostutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- fixture access ---- */

static cae_st_file fx;

static void fx_open_ops(void)
{
    tu_fx_read(&fx, "tests/fixtures/cls_augment/ops.safetensors");
}

static void fx_open_mixup(void)
{
    tu_fx_read(&fx, "tests/fixtures/cls_augment/mixup.safetensors");
}

static void fx_close(void)
{
    cae_st_free(&fx);
}

static const char *op_name[CAE_RA_NUM_OPS] = {
    "AutoContrast", "Equalize", "Invert",   "Rotate", "Posterize",     "Solarize",
    "SolarizeAdd",  "Color",    "Contrast", "Brightness", "Sharpness", "ShearX",
    "ShearY",       "TranslateXRel", "TranslateYRel"};

static const unsigned char fills[2][3] = {{128, 128, 128}, {124, 116, 104}};

/* ---- each op against Pillow ---- */

START_TEST(test_ops_pillow)
{
    int nimg = tu_fx_meta_int(&fx, "images"), total = 0;
    int worst[CAE_RA_NUM_OPS] = {0}, cases[CAE_RA_NUM_OPS] = {0};
    size_t ndiff[CAE_RA_NUM_OPS] = {0};
    ck_assert_int_ge(nimg, 3);
    for (int k = 0; k < nimg; k++) {
        const cae_st_tensor *im = tu_fx_get(&fx, CAE_DT_U8, "image.%d", k);
        const cae_st_tensor *par = tu_fx_get(&fx, CAE_DT_F64, "ops.%d.params", k);
        const cae_st_tensor *out = tu_fx_get(&fx, CAE_DT_U8, "ops.%d.out", k);
        int h = (int)im->shape[0], w = (int)im->shape[1];
        size_t n = (size_t)w * (size_t)h * 3;
        int ncase = (int)par->shape[0];
        unsigned char *got = malloc(n), *scratch = malloc(n);
        ck_assert_int_eq((int)out->shape[0], ncase);
        for (int c = 0; c < ncase; c++) {
            cae_ra_op op = (cae_ra_op)(int)tu_fx_f64(par, (size_t)c * 8 + 0);
            double m = tu_fx_f64(par, (size_t)c * 8 + 1), arg = tu_fx_f64(par, (size_t)c * 8 + 6);
            int inc = (int)tu_fx_f64(par, (size_t)c * 8 + 2);
            int neg = (int)tu_fx_f64(par, (size_t)c * 8 + 3);
            cae_filter interp = (cae_filter)(int)tu_fx_f64(par, (size_t)c * 8 + 4);
            int fill = (int)tu_fx_f64(par, (size_t)c * 8 + 5);
            const unsigned char *want = (const unsigned char *)out->data + (size_t)c * n;
            double level = cae_randaug_level(op, inc, m, neg);
            ck_assert((unsigned)op < CAE_RA_NUM_OPS);
            if (op != CAE_RA_AUTOCONTRAST && op != CAE_RA_EQUALIZE && op != CAE_RA_INVERT)
                ck_assert_msg(level == arg, "%s m %g inc %d neg %d: level %.17g, timm %.17g",
                              op_name[op], m, inc, neg, level, arg);
            memcpy(got, im->data, n);
            ck_assert_int_eq(cae_randaug_op(op, arg, interp, fills[fill], got, w, h, scratch), 0);
            for (size_t i = 0; i < n; i++) {
                int d = abs((int)got[i] - (int)want[i]);
                if (d > worst[op])
                    worst[op] = d;
                ndiff[op] += d != 0;
                if (d > 0 && ndiff[op] <= 3)
                    fprintf(stderr, "  %s image %d case %d (m %g inc %d neg %d interp %d): "
                            "pixel %zu channel %zu: %d vs Pillow %d\n", op_name[op], k, c, m,
                            inc, neg, (int)interp, i / 3, i % 3, got[i], want[i]);
            }
            cases[op]++;
            total++;
        }
        free(got);
        free(scratch);
    }
    ck_assert_int_eq(total, tu_fx_meta_int(&fx, "op_cases"));
    printf("RandAugment ops vs Pillow %s (%d cases): max |diff| per op\n",
           cae_st_meta(&fx, "pillow"), total);
    for (int op = 0; op < CAE_RA_NUM_OPS; op++) {
        printf("  %-14s %3d cases  max %d  (%zu values differ)\n", op_name[op], cases[op],
               worst[op], ndiff[op]);
        ck_assert_int_gt(cases[op], 0);
    }
    for (int op = 0; op < CAE_RA_NUM_OPS; op++)
        ck_assert_msg(worst[op] == 0, "%s differs from Pillow by %d", op_name[op], worst[op]);
}
END_TEST

/* ---- the evaluation transform ---- */

START_TEST(test_eval_transform)
{
    int n = tu_fx_meta_int(&fx, "eval_cases");
    cae_augment_scratch *s = cae_augment_scratch_new();
    ck_assert_int_ge(n, 3);
    for (int c = 0; c < n; c++) {
        const cae_st_tensor *im = tu_fx_get(&fx, CAE_DT_U8, "evalimg.%d", c);
        const cae_st_tensor *cfg = tu_fx_get(&fx, CAE_DT_F64, "eval.%d.cfg", c);
        const cae_st_tensor *want = tu_fx_get(&fx, CAE_DT_F32, "eval.%d.view", c);
        int S = (int)tu_fx_f64(cfg, 0);
        cae_image img = {0};
        float *view = malloc(want->nbytes);
        double worst = 0;
        ck_assert_int_eq(cae_image_reserve(&img, (int)im->shape[1], (int)im->shape[0]), 0);
        memcpy(img.rgb, im->data, im->nbytes);
        ck_assert_int_eq((int)want->numel, 3 * S * S);
        ck_assert_int_eq(cae_cls_eval_transform(S, tu_fx_f64(cfg, 1),
                                                (cae_filter)(int)tu_fx_f64(cfg, 2),
                                                (int)tu_fx_f64(cfg, 3), &img, s, view),
                         0);
        for (size_t i = 0; i < want->numel; i++) {
            float w;
            memcpy(&w, (const char *)want->data + i * 4, 4);
            worst = fmax(worst, fabs((double)view[i] - w));
        }
        ck_assert_msg(worst == 0, "eval case %d: max |diff| %g", c, worst);
        free(view);
        cae_image_free(&img);
    }
    {
        cae_image img = {0};
        float v[3 * 16 * 16];
        ck_assert_int_eq(cae_image_reserve(&img, 4, 4), 0);
        ck_assert_int_eq(cae_cls_eval_transform(16, 0, CAE_FILTER_BICUBIC, 0, &img, s, v), -1);
        ck_assert_int_eq(cae_cls_eval_transform(0, 0.875, CAE_FILTER_BICUBIC, 0, &img, s, v), -1);
        cae_image_free(&img);
    }
    cae_augment_scratch_free(s);
}
END_TEST

/* ---- the --aa grammar ---- */

START_TEST(test_parse)
{
    cae_randaug_cfg c;
    ck_assert_int_eq(cae_randaug_parse("rand-m9-mstd0.5-inc1", &c), 0);
    ck_assert_int_eq(c.num_layers, 2);
    ck_assert(c.magnitude == 9 && c.magnitude_std == 0.5 && c.increasing == 1);
    ck_assert(c.prob == 0.5 && c.magnitude_max == 10 && c.interp == CAE_FILTER_BICUBIC);
    ck_assert(c.fill[0] == 128 && c.fill[1] == 128 && c.fill[2] == 128);
    ck_assert_int_eq(cae_randaug_parse("rand-n3-m7.5-mmax12-p0.7-inc0", &c), 0);
    ck_assert(c.num_layers == 3 && c.magnitude == 7.5 && c.magnitude_max == 12 &&
              c.prob == 0.7 && c.increasing == 0 && c.magnitude_std == 0);
    ck_assert_int_eq(cae_randaug_parse("rand", &c), 0);
    ck_assert(c.num_layers == 2 && c.magnitude == 10);
    ck_assert_int_eq(cae_randaug_parse("", &c), 0);
    ck_assert_int_eq(c.num_layers, 0);
    ck_assert_int_eq(cae_randaug_parse("none", &c), 0);
    ck_assert_int_eq(c.num_layers, 0);
    ck_assert_int_eq(cae_randaug_parse(NULL, &c), 0);
    ck_assert_int_eq(c.num_layers, 0);
    const char *bad[] = {"original",         "v0",        "augmix-m5", "rand-m9-w0",
                         "rand-x3",          "rand-m",    "rand-mX",   "rand-m9-inc2",
                         "rand-n1.5",        "rand-p2",   "rand-m-1",  "rand-m9-mstd0.5-foo1",
                         "rand-m9-mstd0.5x", "rand-mnan", "rand-minf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(cae_randaug_parse(bad[i], &c) == -1, "'%s' accepted", bad[i]);
}
END_TEST

/* ---- the policy's draws ---- */

START_TEST(test_randaug_draw_stats)
{
    cae_randaug_cfg c;
    cae_randaug_step st[4];
    long ops[CAE_RA_NUM_OPS] = {0}, applied = 0, rounds = 0, signed_n = 0, neg = 0, bad = 0;
    double sum = 0, sum2 = 0, maxm = 0, minm = 100;
    const long N = 60000;
    cae_rng r;
    ck_assert_int_eq(cae_randaug_parse("rand-m9-mstd0.5-inc1", &c), 0);
    cae_rng_seed(&r, 7);
    for (long i = 0; i < N; i++) {
        bad += cae_randaug_draw(&c, &r, st) != 0;
        for (int k = 0; k < 2; k++) {
            rounds++;
            ops[st[k].op]++;
            if (!st[k].applied)
                continue;
            applied++;
            sum += st[k].magnitude;
            sum2 += st[k].magnitude * st[k].magnitude;
            maxm = fmax(maxm, st[k].magnitude);
            minm = fmin(minm, st[k].magnitude);
            if (st[k].op == CAE_RA_ROTATE || st[k].op == CAE_RA_COLOR ||
                st[k].op == CAE_RA_SHEAR_X) {
                signed_n++;
                neg += st[k].negate;
                bad += !(st[k].negate ? st[k].arg < 1e-12 || st[k].op == CAE_RA_COLOR
                                      : st[k].arg >= 0);
            }
            bad += st[k].arg != cae_randaug_level(st[k].op, 1, st[k].magnitude, st[k].negate);
        }
    }
    ck_assert_int_eq(bad, 0);
    for (int op = 0; op < CAE_RA_NUM_OPS; op++) /* 1/15 each: sd 0.001 */
        ck_assert_msg(fabs((double)ops[op] / rounds - 1.0 / 15) < 0.005, "op %s: %g",
                      op_name[op], (double)ops[op] / rounds);
    ck_assert(fabs((double)applied / rounds - 0.5) < 0.01);
    ck_assert(fabs((double)neg / signed_n - 0.5) < 0.02);
    /* N(9, 0.5) clipped to 10: mean 9 - 0.0042, sd about 0.49 */
    double mean = sum / applied, sd = sqrt(sum2 / applied - mean * mean);
    ck_assert_msg(fabs(mean - 8.9958) < 0.01, "magnitude mean %g", mean);
    ck_assert_msg(sd > 0.46 && sd < 0.5, "magnitude sd %g", sd);
    ck_assert(maxm == 10.0 && minm > 6 && minm < 8);

    /* mstd > 100: uniform in [0, m] */
    ck_assert_int_eq(cae_randaug_parse("rand-m8-mstd101-n1-p1", &c), 0);
    sum = 0;
    for (long i = 0; i < N; i++) {
        bad += cae_randaug_draw(&c, &r, st) != 0;
        bad += !(st[0].applied && st[0].magnitude >= 0 && st[0].magnitude <= 8);
        sum += st[0].magnitude;
    }
    ck_assert_int_eq(bad, 0);
    ck_assert(fabs(sum / N - 4.0) < 0.05);
    /* no noise: the magnitude itself */
    ck_assert_int_eq(cae_randaug_parse("rand-m12-n1-p1", &c), 0);
    ck_assert_int_eq(cae_randaug_draw(&c, &r, st), 0);
    ck_assert(st[0].magnitude == 10.0); /* clipped to mmax */
}
END_TEST

/* Every output of a one-op policy is one of the possible single-op results:
 * counts how often each appears. */
START_TEST(test_randaug_policy)
{
    enum { W = 19, H = 14, NC = 2 * CAE_RA_NUM_OPS };
    unsigned char img[W * H * 3], cand[NC][W * H * 3], got[W * H * 3], scratch[W * H * 3];
    int valid[NC] = {0}, count[NC + 1] = {0};
    cae_randaug_cfg c;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            unsigned char *p = img + (y * W + x) * 3;
            p[0] = (unsigned char)(6 * x + y);
            p[1] = (unsigned char)(80 + (x * y * 7) % 90);
            p[2] = (unsigned char)(100 + ((x / 3 + y / 2) % 2) * 60 + x);
        }
    ck_assert_int_eq(cae_randaug_parse("rand-m9-n1-p1-inc1", &c), 0);
    for (int op = 0; op < CAE_RA_NUM_OPS; op++)
        for (int neg = 0; neg < 2; neg++) {
            int k = op * 2 + neg;
            memcpy(cand[k], img, sizeof img);
            ck_assert_int_eq(cae_randaug_op((cae_ra_op)op,
                                            cae_randaug_level((cae_ra_op)op, 1, 9, neg), c.interp,
                                            c.fill, cand[k], W, H, scratch),
                             0);
            valid[k] = neg == 0 || cae_randaug_level((cae_ra_op)op, 1, 9, 1) !=
                                       cae_randaug_level((cae_ra_op)op, 1, 9, 0);
        }
    /* the candidates are pairwise distinct and differ from the input */
    for (int a = 0; a < NC; a++) {
        if (!valid[a])
            continue;
        ck_assert_msg(memcmp(cand[a], img, sizeof img) != 0, "candidate %d is the identity", a);
        for (int b = 0; b < a; b++)
            if (valid[b])
                ck_assert_msg(memcmp(cand[a], cand[b], sizeof img) != 0, "candidates %d, %d", a,
                              b);
    }
    const int N = 6000;
    int nbad = 0;
    for (int i = 0; i < N; i++) {
        uint64_t state = (uint64_t)i * 977 + 5;
        int hit = NC;
        memcpy(got, img, sizeof img);
        nbad += cae_randaug_apply(&c, &state, got, W, H, scratch) != 0;
        for (int k = 0; k < NC; k++)
            if (valid[k] && memcmp(got, cand[k], sizeof img) == 0)
                hit = k;
        count[hit]++;
    }
    ck_assert_msg(nbad == 0 && count[NC] == 0, "%d outputs are no single-op result", count[NC]);
    for (int op = 0; op < CAE_RA_NUM_OPS; op++) {
        int k = op * 2;
        double f = (double)(count[k] + count[k + 1]) / N;
        ck_assert_msg(fabs(f - 1.0 / 15) < 0.02, "%s chosen %g", op_name[op], f);
        if (valid[k + 1]) /* signed: half each way */
            ck_assert_msg(fabs((double)count[k + 1] / (count[k] + count[k + 1]) - 0.5) < 0.12,
                          "%s negated %d of %d", op_name[op], count[k + 1],
                          count[k] + count[k + 1]);
    }

    /* p = 0: nothing changes; p = 0.5, n = 1: half the images unchanged */
    int same = 0;
    ck_assert_int_eq(cae_randaug_parse("rand-m9-n1-p0", &c), 0);
    for (int i = 0; i < 200; i++) {
        uint64_t state = (uint64_t)i;
        memcpy(got, img, sizeof img);
        nbad += cae_randaug_apply(&c, &state, got, W, H, scratch) != 0;
        nbad += memcmp(got, img, sizeof img) != 0;
    }
    ck_assert_int_eq(nbad, 0);
    ck_assert_int_eq(cae_randaug_parse("rand-m9-n1-inc1", &c), 0);
    for (int i = 0; i < 4000; i++) {
        uint64_t state = (uint64_t)i, before = state;
        memcpy(got, img, sizeof img);
        nbad += cae_randaug_apply(&c, &state, got, W, H, scratch) != 0;
        nbad += state == before; /* the state advances */
        same += memcmp(got, img, sizeof img) == 0;
    }
    ck_assert_int_eq(nbad, 0);
    ck_assert_msg(fabs(same / 4000.0 - 0.5) < 0.04, "unchanged %d of 4000", same);

    /* Pillow's transform refuses other filters: so do the geometric ops */
    ck_assert_int_eq(cae_randaug_op(CAE_RA_ROTATE, 10, CAE_FILTER_LANCZOS, c.fill, got, W, H,
                                    scratch),
                     -1);
}
END_TEST

/* ---- RandomErasing ---- */

START_TEST(test_random_erasing)
{
    enum { S = 64 };
    static float v[3 * S * S];
    int boxes[4][4];
    long erased = 0, trials = 20000, inside = 0, bad = 0, bad_area = 0, bad_aspect = 0;
    double asum = 0, vsum = 0, vsum2 = 0;
    cae_rng r;
    cae_rng_seed(&r, 11);
    for (long t = 0; t < trials; t++) {
        memset(v, 0, sizeof v);
        int nb = cae_random_erasing(&r, 0.25, 1, v, S, S, boxes);
        ck_assert(nb == 0 || nb == 1);
        if (nb == 0) {
            for (int i = 0; i < 3 * S * S; i++)
                bad += v[i] != 0.0f;
            continue;
        }
        erased++;
        int top = boxes[0][0], left = boxes[0][1], bh = boxes[0][2], bw = boxes[0][3];
        bad += !(top >= 0 && left >= 0 && bh < S && bw < S && top + bh <= S && left + bw <= S);
        double area = (double)bh * bw / (S * S);
        /* area in [0.02, 1/3] up to the rounding of both sides */
        bad_area += !(area >= 0.02 * 0.7 && area <= 1.0 / 3.0 * 1.2);
        if (bh >= 8 && bw >= 8) /* aspect within [0.3, 3.3] up to rounding */
            bad_aspect += !((double)bh / bw > 0.3 * 0.85 && (double)bh / bw < 1 / 0.3 * 1.15);
        asum += area;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    float val = v[c * S * S + y * S + x];
                    int in = y >= top && y < top + bh && x >= left && x < left + bw;
                    if (!in)
                        bad += val != 0.0f; /* changed outside the box */
                    else {
                        inside++;
                        vsum += val;
                        vsum2 += (double)val * val;
                    }
                }
    }
    ck_assert_msg(bad == 0, "%ld values changed outside the boxes or boxes outside", bad);
    ck_assert_msg(bad_area == 0 && bad_aspect == 0, "%ld areas, %ld aspects out of range",
                  bad_area, bad_aspect);
    ck_assert_msg(fabs((double)erased / trials - 0.25) < 0.015, "erased %ld", erased);
    /* mean area of uniform(0.02, 1/3), slightly lowered by the rejected big, thin boxes */
    ck_assert_msg(asum / erased > 0.15 && asum / erased < 0.18, "mean area %g", asum / erased);
    ck_assert(fabs(vsum / inside) < 0.01);
    ck_assert(fabs(vsum2 / inside - 1.0) < 0.01);
    /* recount 3: 1..3 boxes, each a third of the area */
    long nbox[4] = {0};
    for (long t = 0; t < 3000; t++) {
        int nb = cae_random_erasing(&r, 1.0, 3, v, S, S, boxes);
        ck_assert(nb >= 1 && nb <= 3);
        nbox[nb]++;
    }
    for (int k = 1; k <= 3; k++)
        ck_assert_msg(fabs(nbox[k] / 3000.0 - 1.0 / 3) < 0.04, "%d boxes: %ld", k, nbox[k]);
}
END_TEST

/* ---- the training transform ---- */

static void fill_image(cae_image *img, int w, int h)
{
    ck_assert_int_eq(cae_image_reserve(img, w, h), 0);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = img->rgb + ((size_t)y * w + x) * 3;
            p[0] = (unsigned char)(x * 255 / w);
            p[1] = (unsigned char)(y * 255 / h);
            p[2] = (unsigned char)((x * 7 + y * 13) % 256);
        }
}

START_TEST(test_train_transform)
{
    enum { S = 32 };
    cae_cls_train_cfg c;
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    static float a[3 * S * S], b[3 * S * S];
    int mirrored = 0;
    fill_image(&img, 57, 45);
    cae_cls_train_cfg_default(&c);
    c.input_size = S;
    ck_assert_int_eq(cae_cls_train_check(&c), 0);
    /* a pure function of the seed; different seeds differ */
    ck_assert_int_eq(cae_cls_train_transform(&c, &img, 42, s, a), 0);
    ck_assert_int_eq(cae_cls_train_transform(&c, &img, 7, s, b), 0);
    ck_assert_int_ne(memcmp(a, b, sizeof a), 0);
    ck_assert_int_eq(cae_cls_train_transform(&c, &img, 42, s, b), 0);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    int nonfinite = 0;
    for (int i = 0; i < 3 * S * S; i++)
        nonfinite += !isfinite(a[i]);
    ck_assert_int_eq(nonfinite, 0);
    /* flip: the crop is drawn first, so hflip 1 mirrors hflip 0's view */
    c.aa.num_layers = 0;
    c.color_jitter = 0;
    c.reprob = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        c.hflip = 0;
        ck_assert_int_eq(cae_cls_train_transform(&c, &img, seed, s, a), 0);
        c.hflip = 1;
        ck_assert_int_eq(cae_cls_train_transform(&c, &img, seed, s, b), 0);
        int diff = 0;
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    diff += a[(ch * S + y) * S + x] != b[(ch * S + y) * S + S - 1 - x];
        ck_assert_msg(diff == 0, "seed %d: hflip 1 is not the mirror of hflip 0", (int)seed);
    }
    /* hflip 0.5: about half mirrored */
    c.hflip = 0.5;
    for (uint64_t seed = 0; seed < 400; seed++) {
        c.hflip = 0;
        ck_assert_int_eq(cae_cls_train_transform(&c, &img, seed, s, a), 0);
        c.hflip = 0.5;
        ck_assert_int_eq(cae_cls_train_transform(&c, &img, seed, s, b), 0);
        mirrored += memcmp(a, b, sizeof a) != 0;
    }
    ck_assert_msg(mirrored > 160 && mirrored < 240, "mirrored %d of 400", mirrored);
    /* values: normalized bytes, (0 - 0.5) / 0.5 .. (1 - 0.5) / 0.5 */
    int outside = 0;
    for (int i = 0; i < 3 * S * S; i++)
        outside += !(a[i] >= -1.0f && a[i] <= 1.0f);
    ck_assert_int_eq(outside, 0);
    /* refusals */
    cae_cls_train_cfg_default(&c);
    c.interp = CAE_FILTER_LANCZOS;
    ck_assert_int_eq(cae_cls_train_check(&c), -1);
    c.aa.num_layers = 0;
    ck_assert_int_eq(cae_cls_train_check(&c), 0); /* lanczos without aa is fine */
    cae_cls_train_cfg_default(&c);
    c.reprob = 1.5;
    ck_assert_int_eq(cae_cls_train_check(&c), -1);
    cae_cls_train_cfg_default(&c);
    c.recount = 0;
    ck_assert_int_eq(cae_cls_train_check(&c), -1);
    cae_cls_train_cfg_default(&c);
    c.input_size = 0;
    ck_assert_int_eq(cae_cls_train_transform(&c, &img, 1, s, a), -1);
    cae_image_free(&img);
    cae_augment_scratch_free(s);
}
END_TEST

/* input_size <= 32: RandomCrop(S, padding 4) with zero fill, offsets uniform
 * in -4..4; evaluation without resizing */
START_TEST(test_small_input)
{
    enum { S = 28 };
    cae_cls_train_cfg c;
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    static float v[3 * S * S];
    unsigned char px[S * S * 3];
    long seen[9][9] = {{0}};
    const int N = 4000;
    int notcrop = 0;
    ck_assert_int_eq(cae_image_reserve(&img, S, S), 0);
    for (int i = 0; i < S * S; i++) { /* every pixel distinct, none black */
        img.rgb[i * 3] = (unsigned char)(1 + i % 250);
        img.rgb[i * 3 + 1] = (unsigned char)(1 + i / 250);
        img.rgb[i * 3 + 2] = 200;
    }
    cae_cls_train_cfg_default_for(&c, S);
    ck_assert_int_eq(c.crop_padding, 4);
    c.aa.num_layers = 0;
    c.color_jitter = 0;
    c.reprob = 0;
    c.hflip = 0;
    for (int t = 0; t < N; t++) {
        int found = 0;
        if (cae_cls_train_transform(&c, &img, (uint64_t)t, s, v) != 0)
            break;
        for (int i = 0; i < S * S; i++)
            for (int ch = 0; ch < 3; ch++)
                px[i * 3 + ch] = (unsigned char)lrint((v[ch * S * S + i] * 0.5f + 0.5f) * 255.0f);
        for (int dy = -4; dy <= 4 && !found; dy++)
            for (int dx = -4; dx <= 4 && !found; dx++) {
                int ok = 1;
                for (int y = 0; y < S && ok; y++)
                    for (int x = 0; x < S && ok; x++) {
                        int sy = y + dy, sx = x + dx;
                        const unsigned char *o = px + (y * S + x) * 3;
                        if (sy < 0 || sy >= S || sx < 0 || sx >= S)
                            ok = o[0] == 0 && o[1] == 0 && o[2] == 0;
                        else
                            ok = memcmp(o, img.rgb + (sy * S + sx) * 3, 3) == 0;
                    }
                if (ok) {
                    found = 1;
                    seen[dy + 4][dx + 4]++;
                }
            }
        if (!found)
            notcrop++;
    }
    ck_assert_msg(notcrop == 0, "%d views are no padded crop", notcrop);
    for (int a = 0; a < 9; a++)
        for (int b = 0; b < 9; b++)
            ck_assert_msg(fabs(seen[a][b] / (double)N - 1.0 / 81) < 0.008, "offset %d,%d: %ld",
                          a - 4, b - 4, seen[a][b]);
    /* a padded image smaller than S is refused */
    c.input_size = 40;
    ck_assert_int_eq(cae_cls_train_transform(&c, &img, 1, s, v), -1);
    /* evaluation: crop_pct 0 = ToTensor + Normalize only */
    ck_assert_int_eq(cae_cls_eval_transform(S, 0, CAE_FILTER_BICUBIC, 1, &img, s, v), 0);
    for (int i = 0; i < S * S; i++)
        notcrop += v[i] != ((float)img.rgb[i * 3] / 255.0f - 0.485f) / 0.229f;
    ck_assert_int_eq(notcrop, 0);
    ck_assert_int_eq(cae_cls_eval_transform(24, 0, CAE_FILTER_BICUBIC, 1, &img, s, v), -1);
    cae_image_free(&img);
    cae_augment_scratch_free(s);
}
END_TEST

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Throughput at 224 from a 500 x 375 image (ImageNet's typical size). */
START_TEST(test_train_throughput)
{
    cae_cls_train_cfg c;
    cae_image img = {0};
    cae_augment_scratch *s = cae_augment_scratch_new();
    float *v = malloc(sizeof(float) * 3 * 224 * 224);
    const int N = 100;
    double t0, t1;
    fill_image(&img, 500, 375);
    cae_cls_train_cfg_default(&c);
    ck_assert_int_eq(cae_cls_train_transform(&c, &img, 0, s, v), 0);
    t0 = now_s();
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(cae_cls_train_transform(&c, &img, (uint64_t)i, s, v), 0);
    t1 = now_s();
    printf("cae_cls_train_transform 500x375 -> 224 (rand-m9-mstd0.5-inc1, reprob 0.25): "
           "%.2f ms/image, %.0f images/s on one core\n",
           (t1 - t0) * 1e3 / N, N / (t1 - t0));
    c.aa.num_layers = 0;
    c.reprob = 0;
    t0 = now_s();
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(cae_cls_train_transform(&c, &img, (uint64_t)i, s, v), 0);
    t1 = now_s();
    printf("  without RandAugment and erasing (crop, flip, jitter 0.4): %.2f ms/image\n",
           (t1 - t0) * 1e3 / N);
    free(v);
    cae_image_free(&img);
    cae_augment_scratch_free(s);
}
END_TEST

/* ---- Mixup / CutMix ---- */

START_TEST(test_mixup_fixture)
{
    int n = tu_fx_meta_int(&fx, "mix_cases");
    ck_assert_int_ge(n, 6);
    for (int c = 0; c < n; c++) {
        const cae_st_tensor *cfg_t = tu_fx_get(&fx, CAE_DT_F64, "mix.%d.cfg", c);
        const cae_st_tensor *in = tu_fx_get(&fx, CAE_DT_F32, "mix.%d.images", c);
        const cae_st_tensor *lab = tu_fx_get(&fx, CAE_DT_I32, "mix.%d.labels", c);
        const cae_st_tensor *box = tu_fx_get(&fx, CAE_DT_I32, "mix.%d.box", c);
        const cae_st_tensor *lam_t = tu_fx_get(&fx, CAE_DT_F64, "mix.%d.lam", c);
        const cae_st_tensor *out = tu_fx_get(&fx, CAE_DT_F32, "mix.%d.out", c);
        const cae_st_tensor *tgt = tu_fx_get(&fx, CAE_DT_F32, "mix.%d.targets", c);
        int K = (int)tu_fx_f64(cfg_t, 0), cut = (int)tu_fx_f64(cfg_t, 2);
        int S = (int)tu_fx_f64(cfg_t, 6);
        size_t B = (size_t)tu_fx_f64(cfg_t, 7);
        double lam_raw = tu_fx_f64(cfg_t, 3);
        cae_mixup_cfg mc = {0.8, 1.0, 1.0, 0.5, tu_fx_f64(cfg_t, 1), K};
        cae_mixup_params p = {lam_raw, 0, 0, 0, 0, 0};
        float *x = malloc(in->nbytes), *t = malloc(tgt->nbytes);
        int32_t *labels = malloc(lab->nbytes);
        memcpy(x, in->data, in->nbytes);
        memcpy(labels, lab->data, lab->nbytes);
        if (cut) {
            cae_cutmix_box(S, lam_raw, (int)tu_fx_f64(cfg_t, 4), (int)tu_fx_f64(cfg_t, 5), &p);
            ck_assert_int_eq(p.yl, tu_fx_i32(box, 0));
            ck_assert_int_eq(p.yh, tu_fx_i32(box, 1));
            ck_assert_int_eq(p.xl, tu_fx_i32(box, 2));
            ck_assert_int_eq(p.xh, tu_fx_i32(box, 3));
        }
        ck_assert_msg(p.lam == tu_fx_f64(lam_t, 0), "case %d: lam %.17g vs %.17g", c, p.lam,
                      tu_fx_f64(lam_t, 0));
        ck_assert_int_eq(cae_mixup_apply_with(&mc, &p, x, B, S, labels, t), 0);
        ck_assert_int_eq(memcmp(x, out->data, out->nbytes), 0);
        for (size_t i = 0; i < tgt->numel; i++) {
            float w;
            memcpy(&w, (const char *)tgt->data + i * 4, 4);
            ck_assert_msg(t[i] == w, "case %d target %zu: %.9g vs torch %.9g", c, i, t[i], w);
        }
        free(x);
        free(t);
        free(labels);
    }
}
END_TEST

START_TEST(test_mixup_draws)
{
    const int N = 40000;
    cae_mixup_params p;
    double sum = 0, sum2 = 0;
    int cut = 0, none = 0, nbad = 0;
    /* mixup only, alpha 0.8: Beta(0.8, 0.8), mean 1/2, variance 1 / (4 (2a + 1)) */
    cae_mixup_cfg c = {0.8, 0, 1.0, 0.5, 0.1, 10};
    for (int i = 0; i < N; i++) {
        cae_mixup_draw(&c, (uint64_t)i, 16, &p);
        nbad += !(p.lam >= 0 && p.lam <= 1 && !p.use_cutmix);
        sum += p.lam;
        sum2 += p.lam * p.lam;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    ck_assert_int_eq(nbad, 0);
    ck_assert_msg(fabs(mean - 0.5) < 0.006, "mean %g", mean);
    ck_assert_msg(fabs(var - 1.0 / (4 * 2.6)) < 0.003, "var %g", var);
    /* alpha 2: variance 1 / 20 (the a >= 1 gamma path) */
    c.mixup_alpha = 2.0;
    sum = sum2 = 0;
    for (int i = 0; i < N; i++) {
        cae_mixup_draw(&c, (uint64_t)i + N, 16, &p);
        sum += p.lam;
        sum2 += p.lam * p.lam;
    }
    mean = sum / N;
    ck_assert(fabs(mean - 0.5) < 0.005 && fabs(sum2 / N - mean * mean - 0.05) < 0.002);
    /* both, prob 0.5, switch 0.5: a quarter cutmix, half unmixed; cutmix
     * lam is 1 - box area, the box as cae_cutmix_box places it */
    c.mixup_alpha = 0.8;
    c.cutmix_alpha = 1.0;
    c.prob = 0.5;
    for (int i = 0; i < N; i++) {
        cae_mixup_draw(&c, (uint64_t)i * 3 + 1, 16, &p);
        if (p.lam == 1.0 && !p.use_cutmix) {
            none++;
            continue;
        }
        if (p.use_cutmix) {
            cut++;
            nbad += !(0 <= p.yl && p.yl <= p.yh && p.yh <= 16 && 0 <= p.xl && p.xl <= p.xh &&
                      p.xh <= 16);
            nbad += p.lam != 1.0 - (double)((p.yh - p.yl) * (p.xh - p.xl)) / 256.0;
        }
    }
    ck_assert_int_eq(nbad, 0);
    ck_assert_msg(fabs((double)none / N - 0.5) < 0.015, "unmixed %d", none);
    ck_assert_msg(fabs((double)cut / N - 0.25) < 0.015, "cutmix %d", cut);
    /* off: lam 1, targets smoothed one-hot, images untouched */
    {
        cae_mixup_cfg off = {0, 0, 1.0, 0.5, 0.1, 4};
        float img[2 * 3 * 2 * 2], t[2 * 4];
        int32_t lab[2] = {1, 3};
        double lam;
        for (int i = 0; i < 24; i++)
            img[i] = (float)i;
        ck_assert_int_eq(cae_mixup_apply(&off, 5, img, 2, 2, lab, t, &lam), 0);
        ck_assert(lam == 1.0);
        for (int i = 0; i < 24; i++)
            ck_assert(img[i] == (float)i);
        ck_assert(t[1] == (float)(0.9 + 0.025) && t[0] == 0.025f && t[7] == (float)(0.925));
        /* refusals: odd batch, label out of range, bad flags */
        ck_assert_int_eq(cae_mixup_apply(&off, 5, img, 1, 2, lab, t, &lam), -1);
        lab[1] = 4;
        ck_assert_int_eq(cae_mixup_apply(&off, 5, img, 2, 2, lab, t, &lam), -1);
        lab[1] = 3;
        off.smoothing = 1.0;
        ck_assert_int_eq(cae_mixup_check(&off), -1);
        off.smoothing = 0.1;
        off.prob = 2;
        ck_assert_int_eq(cae_mixup_check(&off), -1);
        off.prob = 1;
        off.mixup_alpha = -1;
        ck_assert_int_eq(cae_mixup_check(&off), -1);
    }
}
END_TEST

static Suite *cls_augment_suite(void)
{
    Suite *s = suite_create("cls_augment");
    TCase *ops = tu_tcase(s, "pillow", 60), *mix = tu_tcase(s, "mixup", 60);
    TCase *rnd = tu_tcase(s, "random", 300);
    tcase_add_checked_fixture(ops, fx_open_ops, fx_close);
    TU_ADD_TESTS(ops, test_ops_pillow, test_eval_transform);
    tcase_add_checked_fixture(mix, fx_open_mixup, fx_close);
    tcase_add_test(mix, test_mixup_fixture);
    TU_ADD_TESTS(rnd, test_parse, test_randaug_draw_stats, test_randaug_policy, test_random_erasing,
                 test_train_transform, test_small_input, test_train_throughput, test_mixup_draws);
    return s;
}

TU_MAIN(cls_augment_suite)

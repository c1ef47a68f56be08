/* test_eval.c: the evaluation heads' pieces: BatchNorm1d without affine
 * (training forward with running statistics, evaluation forward, backward)
 * against a double C reference, the reference backward against central
 * finite differences, the LARS step against values worked out by hand, and
 * the frozen evaluation encoder (shapes, pooling, determinism).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "eval/encoder_eval.h"
#include "eval/lars.h"
#include "ops/batchnorm.h"
#include "testutil.h"

#define FD_H 1e-5

static float *rand_f(size_t n, float lo, float hi, unsigned seed)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    tu_random(x, n, lo, hi, seed);
    return x;
}

static double *alloc_d(size_t n)
{
    double *x = calloc(n, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

/* ---- BatchNorm1d reference (double) ---- */

static void bn_ref_forward(double *y, double *mean, double *var, const double *x, size_t B,
                           size_t C)
{
    for (size_t c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (size_t b = 0; b < B; b++)
            m += x[b * C + c];
        m /= (double)B;
        for (size_t b = 0; b < B; b++)
            v += (x[b * C + c] - m) * (x[b * C + c] - m);
        v /= (double)B;
        for (size_t b = 0; b < B; b++)
            y[b * C + c] = (x[b * C + c] - m) / sqrt(v + (double)CAE_BN_EPS);
        if (mean)
            mean[c] = m;
        if (var)
            var[c] = v;
    }
}

static void bn_ref_backward(double *dx, const double *dy, const double *x, size_t B, size_t C)
{
    double *mean = alloc_d(C), *var = alloc_d(C), *y = alloc_d(B * C);
    bn_ref_forward(y, mean, var, x, B, C);
    for (size_t c = 0; c < C; c++) {
        double r = 1.0 / sqrt(var[c] + (double)CAE_BN_EPS), sdy = 0, sdyx = 0;
        for (size_t b = 0; b < B; b++) {
            sdy += dy[b * C + c];
            sdyx += dy[b * C + c] * y[b * C + c];
        }
        for (size_t b = 0; b < B; b++)
            dx[b * C + c] = r * (dy[b * C + c] - sdy / (double)B - y[b * C + c] * sdyx / (double)B);
    }
    free(mean);
    free(var);
    free(y);
}

START_TEST(test_bn_reference_fd)
{
    const size_t B = 6, C = 3, n = B * C;
    float *xf = rand_f(n, -2, 3, 11), *rf = rand_f(n, -1, 1, 12);
    double *x = alloc_d(n), *r = alloc_d(n), *dx = alloc_d(n), *fd = alloc_d(n), *y = alloc_d(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = xf[i];
        r[i] = rf[i];
    }
    bn_ref_backward(dx, r, x, B, C);
    for (size_t i = 0; i < n; i++) {
        double save = x[i], lp = 0, lm = 0;
        x[i] = save + FD_H;
        bn_ref_forward(y, NULL, NULL, x, B, C);
        for (size_t k = 0; k < n; k++)
            lp += r[k] * y[k];
        x[i] = save - FD_H;
        bn_ref_forward(y, NULL, NULL, x, B, C);
        for (size_t k = 0; k < n; k++)
            lm += r[k] * y[k];
        x[i] = save;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(dx[i] - fd[i]) <= 1e-6 * fmax(1.0, fabs(fd[i])),
                      "BN reference backward vs FD at %zu: %g vs %g", i, dx[i], fd[i]);
    free(xf);
    free(rf);
    free(x);
    free(r);
    free(dx);
    free(fd);
    free(y);
}
END_TEST

/* shapes: (B, C) odd and even, one column, a batch of two */
static const size_t shapes[][2] = {{7, 5}, {32, 19}, {2, 1}, {64, 130}};

START_TEST(test_bn_forward_train)
{
    const size_t B = shapes[_i][0], C = shapes[_i][1], n = B * C;
    float *xf = rand_f(n, -1.5f, 4.0f, 21 + (unsigned)_i);
    float *rm0 = rand_f(C, -1, 1, 31), *rv0 = rand_f(C, 0.5f, 2, 32);
    float *got = malloc(n * sizeof *got), *gm = malloc(C * 4), *gr = malloc(C * 4);
    float *grm = malloc(C * 4), *grv = malloc(C * 4);
    double *x = alloc_d(n), *y = alloc_d(n), *mean = alloc_d(C), *var = alloc_d(C);
    double *rstd = alloc_d(C), *wrm = alloc_d(C), *wrv = alloc_d(C);
    tu_dbuf dx = tu_upload(xf, n), dy = tu_filled(n, -7), dm = tu_filled(C, -7), dr = tu_filled(C, -7);
    tu_dbuf drm = tu_upload(rm0, C), drv = tu_upload(rv0, C);
    for (size_t i = 0; i < n; i++)
        x[i] = xf[i];
    bn_ref_forward(y, mean, var, x, B, C);
    for (size_t c = 0; c < C; c++) {
        rstd[c] = 1.0 / sqrt(var[c] + (double)CAE_BN_EPS);
        wrm[c] = 0.9 * rm0[c] + 0.1 * mean[c];
        wrv[c] = 0.9 * rv0[c] + 0.1 * var[c] * (double)B / (double)(B - 1);
    }
    ck_assert_int_eq(cae_batchnorm_forward_train(tu_ctx(), dy.buf, dm.buf, dr.buf, drm.buf, drv.buf,
                                                 dx.buf, B, C, CAE_BN_EPS, CAE_BN_MOMENTUM), 0);
    tu_download(got, &dy);
    tu_download(gm, &dm);
    tu_download(gr, &dr);
    tu_download(grm, &drm);
    tu_download(grv, &drv);
    tu_assert_close("bn y", got, y, n, 1e-5);
    tu_assert_close("bn mean", gm, mean, C, 1e-5);
    tu_assert_close("bn rstd", gr, rstd, C, 1e-4);
    tu_assert_close("bn running mean", grm, wrm, C, 1e-5);
    tu_assert_close("bn running var", grv, wrv, C, 1e-5);

    /* without running statistics: nothing else written */
    ck_assert_int_eq(cae_batchnorm_forward_train(tu_ctx(), dy.buf, dm.buf, dr.buf, cae_buf_null(),
                                                 cae_buf_null(), dx.buf, B, C, CAE_BN_EPS,
                                                 CAE_BN_MOMENTUM), 0);
    tu_download(got, &dy);
    tu_assert_close("bn y (no running stats)", got, y, n, 1e-5);
    tu_free(&dx);
    tu_free(&dy);
    tu_free(&dm);
    tu_free(&dr);
    tu_free(&drm);
    tu_free(&drv);
    free(xf);
    free(rm0);
    free(rv0);
    free(got);
    free(gm);
    free(gr);
    free(grm);
    free(grv);
    free(x);
    free(y);
    free(mean);
    free(var);
    free(rstd);
    free(wrm);
    free(wrv);
}
END_TEST

START_TEST(test_bn_forward_eval)
{
    const size_t B = 9, C = 6, n = B * C;
    float *xf = rand_f(n, -3, 3, 41), *rm = rand_f(C, -1, 1, 42), *rv = rand_f(C, 0.1f, 3, 43);
    float *got = malloc(n * sizeof *got);
    double *want = alloc_d(n);
    tu_dbuf dx = tu_upload(xf, n), dy = tu_filled(n, 5), drm = tu_upload(rm, C), drv = tu_upload(rv, C);
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++)
            want[b * C + c] = ((double)xf[b * C + c] - rm[c]) / sqrt((double)rv[c] + (double)CAE_BN_EPS);
    ck_assert_int_eq(cae_batchnorm_forward_eval(tu_ctx(), dy.buf, drm.buf, drv.buf, dx.buf, B, C,
                                                CAE_BN_EPS), 0);
    tu_download(got, &dy);
    tu_assert_close("bn eval y", got, want, n, 1e-5);
    tu_free(&dx);
    tu_free(&dy);
    tu_free(&drm);
    tu_free(&drv);
    free(xf);
    free(rm);
    free(rv);
    free(got);
    free(want);
}
END_TEST

START_TEST(test_bn_backward)
{
    const size_t B = shapes[_i][0], C = shapes[_i][1], n = B * C;
    float *xf = rand_f(n, -2, 2, 51 + (unsigned)_i), *gf = rand_f(n, -1, 1, 61 + (unsigned)_i);
    float *got = malloc(n * sizeof *got);
    double *x = alloc_d(n), *g = alloc_d(n), *want = alloc_d(n);
    tu_dbuf dx_in = tu_upload(xf, n), ddy = tu_upload(gf, n), ddx = tu_filled(n, 9);
    tu_dbuf dy = tu_filled(n, 0), dm = tu_filled(C, 0), dr = tu_filled(C, 0);
    for (size_t i = 0; i < n; i++) {
        x[i] = xf[i];
        g[i] = gf[i];
    }
    bn_ref_backward(want, g, x, B, C);
    ck_assert_int_eq(cae_batchnorm_forward_train(tu_ctx(), dy.buf, dm.buf, dr.buf, cae_buf_null(),
                                                 cae_buf_null(), dx_in.buf, B, C, CAE_BN_EPS,
                                                 CAE_BN_MOMENTUM), 0);
    ck_assert_int_eq(cae_batchnorm_backward(tu_ctx(), ddx.buf, ddy.buf, dx_in.buf, dm.buf, dr.buf,
                                            B, C), 0);
    tu_download(got, &ddx);
    tu_assert_close("bn dx", got, want, n, 1e-4);
    tu_free(&dx_in);
    tu_free(&ddy);
    tu_free(&ddx);
    tu_free(&dy);
    tu_free(&dm);
    tu_free(&dr);
    free(xf);
    free(gf);
    free(got);
    free(x);
    free(g);
    free(want);
}
END_TEST

/* ---- LARS: values worked out by hand ---- */

START_TEST(test_lars_hand)
{
    cae_lars o;
    float p[2] = {3, 4}, g[2] = {0.6f, 0.8f}, mu[2] = {0, 0};
    float bp[1] = {1}, bg[1] = {2}, bmu[1] = {0};
    cae_lars_defaults(&o, 0.5);
    ck_assert(o.momentum == 0.9 && o.trust_coefficient == 0.001 && o.weight_decay == 0.0);
    /* |p| = 5, |g| = 1: q = 0.005, d = (0.003, 0.004), p -= 0.5 d */
    cae_lars_step(&o, p, g, mu, 2, 2);
    ck_assert_msg(fabs(p[0] - 2.9985) < 1e-6 && fabs(p[1] - 3.998) < 1e-6, "step 1: %g %g", p[0], p[1]);
    ck_assert_msg(fabs(mu[0] - 0.003) < 1e-8 && fabs(mu[1] - 0.004) < 1e-8, "mu 1");
    /* |p| = 4.9975: q = 0.0049975; mu = 0.9 mu + (0.0029985, 0.003998) */
    cae_lars_step(&o, p, g, mu, 2, 2);
    ck_assert_msg(fabs(mu[0] - 0.0056985) < 1e-8 && fabs(mu[1] - 0.007598) < 1e-8, "mu 2: %.9g %.9g",
                  mu[0], mu[1]);
    ck_assert_msg(fabs(p[0] - 2.99565075) < 1e-6 && fabs(p[1] - 3.994201) < 1e-6, "step 2: %.9g %.9g",
                  p[0], p[1]);
    /* a bias (1-D): no adaptation, mu = 2, p = 1 - 0.5 * 2 */
    cae_lars_step(&o, bp, bg, bmu, 1, 1);
    ck_assert_msg(fabs(bp[0]) < 1e-7 && bmu[0] == 2.0f, "bias: %g %g", bp[0], bmu[0]);
    /* weight decay inside the adaptation: g = 0, wd 0.2 gives d = (0.6, 0.8) as above */
    {
        float q[2] = {3, 4}, zero[2] = {0, 0}, m2[2] = {0, 0};
        o.weight_decay = 0.2;
        cae_lars_step(&o, q, zero, m2, 2, 2);
        ck_assert_msg(fabs(q[0] - 2.9985) < 1e-6 && fabs(q[1] - 3.998) < 1e-6, "wd: %g %g", q[0], q[1]);
    }
    /* a zero update keeps q = 1 and the tensor unchanged */
    {
        float q[2] = {2, 4}, gg[2] = {-1, -2}, m2[2] = {0, 0};
        o.weight_decay = 0.5; /* d = g + 0.5 p = 0 exactly */
        cae_lars_step(&o, q, gg, m2, 2, 2);
        ck_assert_msg(q[0] == 2 && q[1] == 4 && m2[0] == 0, "zero update: %g %g", q[0], q[1]);
    }
}
END_TEST

/* ---- the evaluation encoder ---- */

static void tiny_cfg(cae_config *c)
{
    cae_config_defaults(c);
    c->input_size = 16;
    c->patch_size = 4;
    c->embed_dim = 32;
    c->depth = 2;
    c->num_heads = 2;
    c->decoder_embed_dim = 32;
    c->regressor_depth = 1;
    c->decoder_depth = 1;
    c->decoder_num_heads = 2;
    c->num_mask_patches = 6;
    c->pixel_target = 1;
    ck_assert_int_eq(cae_config_finish(c), 0);
}

START_TEST(test_encoder_eval)
{
    cae_config c;
    cae_encoder_eval e;
    const size_t B = 3, D = 32, view = 3 * 16 * 16;
    float *img = rand_f(B * view, -1, 1, 71), *f1 = malloc(B * D * 4), *f2 = malloc(B * D * 4);
    float *fm = malloc(B * D * 4), *one = malloc(D * 4);
    tiny_cfg(&c);
    ck_assert_int_eq(cae_encoder_eval_init(&e, tu_ctx(), &c, B), 0);
    ck_assert_int_eq(cae_encoder_eval_load(&e, "random", 5), 0);
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img, B, CAE_POOL_CLS, f1), 0);
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img, B, CAE_POOL_CLS, f2), 0);
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img, B, CAE_POOL_MEAN, fm), 0);
    /* a batch of one gives image 1's features alone */
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img + view, 1, CAE_POOL_CLS, one), 0);
    for (size_t i = 0; i < B * D; i++) {
        ck_assert(isfinite(f1[i]) && isfinite(fm[i]));
        ck_assert_msg(f1[i] == f2[i], "forward not deterministic at %zu", i);
    }
    for (size_t i = 0; i < D; i++)
        ck_assert_msg(fabsf(one[i] - f1[D + i]) < 1e-4f, "batch of one differs at %zu", i);
    {
        /* cls features (final LN of the cls row) have zero mean over D; the
         * images differ, so do their features, and pooling choices differ */
        double m = 0, diff = 0, pdiff = 0;
        for (size_t i = 0; i < D; i++) {
            m += f1[i];
            diff += fabs(f1[i] - f1[D + i]);
            pdiff += fabs(f1[i] - fm[i]);
        }
        ck_assert_msg(fabs(m / D) < 1e-2, "cls feature mean %g", m / D);
        ck_assert(diff > 1e-3 && pdiff > 1e-3);
    }
    ck_assert_int_ne(cae_encoder_eval_load(&e, "/nonexistent/weights.safetensors", 0), 0);
    cae_encoder_eval_free(&e);
    free(img);
    free(f1);
    free(f2);
    free(fm);
    free(one);
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

static Suite *eval_suite(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("batchnorm");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_bn_reference_fd);
    tcase_add_loop_test(tc, test_bn_forward_train, 0, 4);
    tcase_add_test(tc, test_bn_forward_eval);
    tcase_add_loop_test(tc, test_bn_backward, 0, 4);
    suite_add_tcase(s, tc);
    tc = tcase_create("lars");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_lars_hand);
    suite_add_tcase(s, tc);
    tc = tcase_create("encoder");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_encoder_eval);
    tcase_add_test(tc, test_fashion_mnist_split);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(eval_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed > 0;
}

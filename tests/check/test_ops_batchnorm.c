/* test_ops_batchnorm.c: BatchNorm1d without affine (src/ops/batchnorm.c):
 * the training forward with running statistics, the evaluation forward and
 * the backward, against a double C reference, on odd and even shapes, one
 * column and a batch of two. The reference backward is checked once against
 * central finite differences of the reference forward.
 */
#include "tests/common/testutil.h"

#include "ops/batchnorm.h"

#include <math.h>

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
    double *mean = tu_dvec(C), *var = tu_dvec(C), *y = tu_dvec(B * C);
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
}

/* sum r * batchnorm(x) */
typedef struct {
    double *x, *r, *y;
    size_t B, C;
} bn_fd;

static double bn_loss(void *state)
{
    bn_fd *s = state;
    bn_ref_forward(s->y, NULL, NULL, s->x, s->B, s->C);
    return tu_dot(s->r, s->y, s->B * s->C);
}

START_TEST(test_bn_reference_fd)
{
    const size_t B = 6, C = 3, n = B * C;
    bn_fd s = {tu_to_double(tu_frand(n, -2, 3, 11), n), tu_to_double(tu_frand(n, -1, 1, 12), n),
               tu_dvec(n), B, C};
    double *dx = tu_dvec(n), *fd = tu_dvec(n);
    bn_ref_backward(dx, s.r, s.x, B, C);
    tu_fd_grad(fd, bn_loss, &s, s.x, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(dx[i] - fd[i]) <= 1e-6 * fmax(1.0, fabs(fd[i])),
                      "BN reference backward vs FD at %zu: %g vs %g", i, dx[i], fd[i]);
}
END_TEST

/* shapes: (B, C) odd and even, one column, a batch of two */
static const size_t shapes[][2] = {{7, 5}, {32, 19}, {2, 1}, {64, 130}};

START_TEST(test_bn_forward_train)
{
    const size_t B = shapes[_i][0], C = shapes[_i][1], n = B * C;
    float *xf = tu_frand(n, -1.5f, 4.0f, 21 + (unsigned)_i);
    float *rm0 = tu_frand(C, -1, 1, 31), *rv0 = tu_frand(C, 0.5f, 2, 32);
    float *got = tu_fvec(n), *gm = tu_fvec(C), *gr = tu_fvec(C);
    float *grm = tu_fvec(C), *grv = tu_fvec(C);
    double *x = tu_dvec(n), *y = tu_dvec(n), *mean = tu_dvec(C), *var = tu_dvec(C);
    double *rstd = tu_dvec(C), *wrm = tu_dvec(C), *wrv = tu_dvec(C);
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
}
END_TEST

START_TEST(test_bn_forward_eval)
{
    const size_t B = 9, C = 6, n = B * C;
    float *xf = tu_frand(n, -3, 3, 41), *rm = tu_frand(C, -1, 1, 42), *rv = tu_frand(C, 0.1f, 3, 43);
    float *got = tu_fvec(n);
    double *want = tu_dvec(n);
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
}
END_TEST

START_TEST(test_bn_backward)
{
    const size_t B = shapes[_i][0], C = shapes[_i][1], n = B * C;
    float *xf = tu_frand(n, -2, 2, 51 + (unsigned)_i), *gf = tu_frand(n, -1, 1, 61 + (unsigned)_i);
    float *got = tu_fvec(n);
    double *x = tu_dvec(n), *g = tu_dvec(n), *want = tu_dvec(n);
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
}
END_TEST

static Suite *ops_batchnorm_suite(void)
{
    Suite *s = suite_create("ops_batchnorm");
    TCase *tc = tu_tcase(s, "batchnorm", 300);
    tcase_add_test(tc, test_bn_reference_fd);
    tcase_add_loop_test(tc, test_bn_forward_train, 0, 4);
    tcase_add_test(tc, test_bn_forward_eval);
    tcase_add_loop_test(tc, test_bn_backward, 0, 4);
    return s;
}

TU_MAIN(ops_batchnorm_suite)

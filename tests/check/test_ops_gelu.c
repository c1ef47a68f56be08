/* test_ops_gelu.c: GELU (src/ops/gelu.c), plain and with the bias added in
 * the same pass, against the exact erf form in double.
 *
 * Odd sizes at a non-zero offset with canaries, the far tails and the knee
 * among the inputs, in place and out of place. The reference derivative is
 * checked once against central finite differences of the reference.
 */
#include "tests/common/testutil.h"

#include "ops/ops.h"

#include <math.h>
#include <string.h>

static double gelu_ref(double x)
{
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static double gelu_grad_ref(double x)
{
    const double cdf = 0.5 * (1.0 + erf(x / sqrt(2.0)));
    const double pdf = exp(-0.5 * x * x) / 2.5066282746310002; /* sqrt(2 pi) */
    return cdf + x * pdf;
}

/* GELU of the one double state points to */
static double gelu_at(void *x)
{
    return gelu_ref(*(double *)x);
}

START_TEST(test_gelu_reference_fd)
{
    const size_t n = 41;
    double got[41], want[41];
    for (size_t i = 0; i < n; i++) {
        double x = -5.0 + 0.25 * (double)i;
        got[i] = gelu_grad_ref(x);
        want[i] = tu_fd(gelu_at, &x, &x, 0, TU_FD_H);
    }
    tu_assert_close_d("gelu ref grad vs fd", got, want, n, 1e-8);
}
END_TEST

/* n odd; a few fixed points at the start: 0, the far tails (erf saturates)
 * and a value of each sign near the knee. */
static float *gelu_input(size_t n, unsigned seed)
{
    static const float fixed[] = {0.0f, -10.0f, 10.0f, -30.0f, 30.0f,
                                  -0.75f, 0.75f, -3.5f};
    float *x = tu_frand(n, -6.0f, 6.0f, seed);
    memcpy(x, fixed, sizeof fixed);
    return x;
}

START_TEST(test_gelu_forward)
{
    cae_ctx *ctx = tu_ctx();
    const size_t n = 1237;
    float *xf = gelu_input(n, 21), *got = tu_fvec(n);
    double *y = tu_dvec(n);
    for (size_t i = 0; i < n; i++)
        y[i] = gelu_ref(xf[i]);

    tu_dbuf gx = tu_upload(xf, n), gy = tu_filled(n, 9.0f);
    ck_assert_int_eq(cae_gelu_forward(ctx, gy.buf, gx.buf, n), 0);
    tu_expect("gelu y", &gy, y, 2e-6);
    tu_download(got, &gx);
    ck_assert_mem_eq(got, xf, n * sizeof *got);

    /* in place: y aliases x */
    ck_assert_int_eq(cae_gelu_forward(ctx, gx.buf, gx.buf, n), 0);
    tu_expect("gelu y (in place)", &gx, y, 2e-6);

    tu_free(&gx); tu_free(&gy);
}
END_TEST

/* bias + GELU in one pass, rows of C: C a multiple of 16 (vector groups)
 * and not (scalar loop), with a partial last group */
START_TEST(test_gelu_bias_forward)
{
    cae_ctx *ctx = tu_ctx();
    static const size_t shapes[][2] = {{37, 48}, {29, 21}, {3, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t T = shapes[s][0], C = shapes[s][1], n = T * C;
        float *xf = gelu_input(n, 41 + (unsigned)s), *bf = tu_frand(C, -1.0f, 1.0f, 51);
        double *x = tu_dvec(n), *y = tu_dvec(n);
        for (size_t i = 0; i < n; i++) {
            x[i] = (double)xf[i] + (double)bf[i % C];
            y[i] = gelu_ref((float)x[i]);
        }
        tu_dbuf gx = tu_upload(xf, n), gy = tu_filled(n, 9.0f), gb = tu_upload(bf, C);
        ck_assert_int_eq(cae_gelu_bias_forward(ctx, gy.buf, gx.buf, gb.buf, T, C), 0);
        tu_expect("gelu_bias y", &gy, y, 2e-6);
        tu_expect("gelu_bias x + b", &gx, x, 1e-7);
        tu_free(&gx); tu_free(&gy); tu_free(&gb);
    }
}
END_TEST

START_TEST(test_gelu_backward)
{
    cae_ctx *ctx = tu_ctx();
    const size_t n = 1237;
    float *xf = gelu_input(n, 31), *dyf = tu_frand(n, -2.0f, 2.0f, 32);
    double *dx = tu_dvec(n);
    for (size_t i = 0; i < n; i++)
        dx[i] = (double)dyf[i] * gelu_grad_ref(xf[i]);

    tu_dbuf gx = tu_upload(xf, n), gdy = tu_upload(dyf, n),
            gdx = tu_filled(n, -3.0f);
    ck_assert_int_eq(cae_gelu_backward(ctx, gdx.buf, gdy.buf, gx.buf, n), 0);
    tu_expect("gelu dx", &gdx, dx, 5e-6);

    /* in place: dx aliases dy */
    ck_assert_int_eq(cae_gelu_backward(ctx, gdy.buf, gdy.buf, gx.buf, n), 0);
    tu_expect("gelu dx (in place)", &gdy, dx, 5e-6);

    tu_free(&gx); tu_free(&gdy); tu_free(&gdx);
}
END_TEST

/* Zero sizes are no-ops that succeed and write nothing (an empty NDRange
 * would be an OpenCL error). */
START_TEST(test_gelu_empty)
{
    cae_ctx *ctx = tu_ctx();
    tu_dbuf a = tu_filled(4, 1.0f), b = tu_filled(4, 2.0f);
    ck_assert_int_eq(cae_gelu_forward(ctx, a.buf, b.buf, 0), 0);
    ck_assert_int_eq(cae_gelu_backward(ctx, a.buf, b.buf, b.buf, 0), 0);
    tu_expect_filled("gelu of nothing", &a, 1.0f);
    tu_free(&a);
    tu_free(&b);
}
END_TEST

static Suite *ops_gelu_suite(void)
{
    Suite *s = suite_create("ops_gelu");
    TCase *tc = tu_tcase(s, "gelu", 120);
    TU_ADD_TESTS(tc, test_gelu_reference_fd, test_gelu_forward, test_gelu_bias_forward,
                 test_gelu_backward, test_gelu_empty);
    return s;
}

TU_MAIN(ops_gelu_suite)

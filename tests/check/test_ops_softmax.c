/* test_ops_softmax.c: the row softmax (src/ops/softmax.c), forward and
 * backward, out of place and in place, against the double reference of
 * tests/common/reference.c.
 *
 * Odd shapes and vocabulary-sized rows, rows far from 0 (a softmax without
 * the max shift overflows), inputs at a non-zero offset between canaries,
 * outputs prefilled with NaN. The reference backward is checked once against
 * central finite differences of the reference forward. CAE_TEST_SMALL=1
 * shrinks the long rows (for oclgrind).
 */
#include "tests/common/testutil.h"
#include "tests/common/reference.h"

#include "ops/ops.h"

#include <math.h>

#define TOL 2e-5    /* float device result vs double reference */
#define FD_TOL 1e-7 /* finite differences vs analytic reference gradient */

/* Same, with both sides multiplied by s first (tiny values, long rows). */
static void expect_scaled(const char *what, const tu_dbuf *b,
                          const double *want, double s, double tol)
{
    float *got = tu_fvec(b->n);
    double *w = tu_dvec(b->n);
    tu_download(got, b);
    for (size_t i = 0; i < b->n; i++) {
        got[i] = (float)(got[i] * s);
        w[i] = want[i] * s;
    }
    tu_assert_close(what, got, w, b->n, tol);
}

/* Softmax forward and backward of x [R,K] (random in [-lo_hi, lo_hi]),
 * out of place and in place; results scaled by K before comparing so that
 * long rows of tiny probabilities are still checked tightly. */
static void softmax_case(size_t R, size_t K, float spread, unsigned seed)
{
    const size_t n = R * K;
    float *x = tu_frand(n, -spread, spread, seed);
    /* rows far from 0: a softmax without the max shift overflows */
    if (R > 2) {
        for (size_t k = 0; k < K; k++) {
            x[1 * K + k] += 1000.0f;
            x[2 * K + k] -= 1000.0f;
        }
    }
    float *dy = tu_frand(n, -1, 1, seed + 1);
    double *y = tu_dvec(n), *dx = tu_dvec(n);
    tu_ref_softmax(y, tu_to_double(x, n), R, K);
    float *yf = tu_fvec(n);
    for (size_t i = 0; i < n; i++)
        yf[i] = (float)y[i];
    /* the backward reference uses the float y the device sees */
    tu_ref_softmax_backward(dx, tu_to_double(dy, n), tu_to_double(yf, n), R, K);

    cae_ctx *ctx = tu_ctx();
    tu_dbuf d_x = tu_upload(x, n), d_y = tu_filled(n, NAN);
    ck_assert_int_eq(cae_softmax_forward(ctx, d_y.buf, d_x.buf, R, K), 0);
    expect_scaled("softmax y", &d_y, y, (double)K, TOL);
    tu_expect("softmax x untouched", &d_x, tu_to_double(x, n), 0.0);
    ck_assert_int_eq(cae_softmax_forward(ctx, d_x.buf, d_x.buf, R, K), 0);
    expect_scaled("softmax y (in place)", &d_x, y, (double)K, TOL);

    tu_dbuf d_yf = tu_upload(yf, n), d_dy = tu_upload(dy, n);
    tu_dbuf d_dx = tu_filled(n, NAN);
    ck_assert_int_eq(cae_softmax_backward(ctx, d_dx.buf, d_dy.buf, d_yf.buf,
                                          R, K), 0);
    expect_scaled("softmax dx", &d_dx, dx, (double)K, TOL);
    ck_assert_int_eq(cae_softmax_backward(ctx, d_dy.buf, d_dy.buf, d_yf.buf,
                                          R, K), 0);
    expect_scaled("softmax dx (in place)", &d_dy, dx, (double)K, TOL);
    tu_free(&d_x); tu_free(&d_y); tu_free(&d_yf); tu_free(&d_dy);
    tu_free(&d_dx);
}

START_TEST(test_softmax)
{
    softmax_case(37, 29, 4.0f, 41);
    softmax_case(1, 1, 4.0f, 43);
}
END_TEST

START_TEST(test_softmax_long_rows)
{
    /* the vocabulary-sized rows of the real model */
    softmax_case(3, tu_small_mode() ? 517 : 8193, 5.0f, 45);
}
END_TEST

typedef struct {
    double *x, *g, *y;
    size_t R, K;
} softmax_fd;

static double softmax_loss(void *state)
{
    softmax_fd *s = state;
    tu_ref_softmax(s->y, s->x, s->R, s->K);
    return tu_dot(s->g, s->y, s->R * s->K);
}

START_TEST(test_softmax_fd)
{
    softmax_fd s = {NULL, NULL, NULL, 4, 7};
    const size_t n = s.R * s.K;
    s.x = tu_to_double(tu_frand(n, -2, 2, 51), n);
    s.g = tu_to_double(tu_frand(n, -1, 1, 52), n);
    s.y = tu_dvec(n);
    double *gx = tu_dvec(n);
    softmax_loss(&s);
    tu_ref_softmax_backward(gx, s.g, s.y, s.R, s.K);
    tu_fd_check("softmax ref dx", gx, softmax_loss, &s, s.x, n, FD_TOL);
}
END_TEST

static Suite *ops_softmax_suite(void)
{
    Suite *s = suite_create("ops_softmax");
    TCase *tc = tu_tcase(s, "softmax", 120);
    TU_ADD_TESTS(tc, test_softmax, test_softmax_long_rows, test_softmax_fd);
    return s;
}

TU_MAIN(ops_softmax_suite)

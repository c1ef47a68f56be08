/* test_ops_linear.c: the linear layer (src/ops/linear.c): forward with and
 * without bias, backward in overwrite and accumulate modes and with absent
 * gradients, the column sum and the bias add, against plain C references in
 * double.
 *
 * Odd shapes, inputs at a non-zero offset between canaries, outputs that
 * must be overwritten prefilled with NaN, parameter gradients accumulated
 * onto non-zero values. The reference backward is checked once against
 * central finite differences of its own forward. The GEMM back end comes
 * from CAE_TEST_GEMM (host or clblast): tests/shell/gemm-clblast.sh runs the
 * suite again on CLBlast. CAE_TEST_SMALL=1 shrinks the long shapes (for
 * oclgrind).
 */
#include "tests/common/testutil.h"

#include "ops/ops.h"

#include <math.h>

#define TOL 2e-5    /* float device result vs double reference */
#define FD_TOL 1e-7 /* finite differences vs analytic reference gradient */

/* y[T,O] = x[T,I] W[O,I]^T + b (b may be NULL) */
static void ref_linear_forward(double *y, const double *x, const double *w,
                               const double *b, size_t T, size_t I, size_t O)
{
    for (size_t t = 0; t < T; t++)
        for (size_t o = 0; o < O; o++)
            y[t * O + o] = tu_dot(x + t * I, w + o * I, I) + (b ? b[o] : 0.0);
}

/* gx = dy W, gw = dy^T x, gb = colsum dy (plain gradients, no accumulate) */
static void ref_linear_backward(double *gx, double *gw, double *gb,
                                const double *dy, const double *x,
                                const double *w, size_t T, size_t I, size_t O)
{
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < I; i++) {
            double s = 0.0;
            for (size_t o = 0; o < O; o++)
                s += dy[t * O + o] * w[o * I + i];
            gx[t * I + i] = s;
        }
    for (size_t o = 0; o < O; o++) {
        for (size_t i = 0; i < I; i++) {
            double s = 0.0;
            for (size_t t = 0; t < T; t++)
                s += dy[t * O + o] * x[t * I + i];
            gw[o * I + i] = s;
        }
        double s = 0.0;
        for (size_t t = 0; t < T; t++)
            s += dy[t * O + o];
        gb[o] = s;
    }
}

enum { LT = 37, LI = 29, LO = 23 };

START_TEST(test_linear_forward)
{
    float *x = tu_frand(LT * LI, -1, 1, 1), *w = tu_frand(LO * LI, -.5f, .5f, 2);
    float *b = tu_frand(LO, -1, 1, 3);
    double *want = tu_dvec(LT * LO), *want_nb = tu_dvec(LT * LO);
    ref_linear_forward(want, tu_to_double(x, LT * LI), tu_to_double(w, LO * LI),
                       tu_to_double(b, LO), LT, LI, LO);
    ref_linear_forward(want_nb, tu_to_double(x, LT * LI), tu_to_double(w, LO * LI),
                       NULL, LT, LI, LO);

    cae_ctx *ctx = tu_ctx();
    tu_dbuf dx = tu_upload(x, LT * LI), dw = tu_upload(w, LO * LI);
    tu_dbuf db = tu_upload(b, LO);
    tu_dbuf y = tu_filled(LT * LO, NAN), y2 = tu_filled(LT * LO, NAN);
    ck_assert_int_eq(cae_linear_forward(ctx, y.buf, dx.buf, dw.buf, db.buf,
                                        LT, LI, LO), 0);
    ck_assert_int_eq(cae_linear_forward(ctx, y2.buf, dx.buf, dw.buf,
                                        cae_buf_null(), LT, LI, LO), 0);
    tu_expect("linear y", &y, want, TOL);
    tu_expect("linear y (no bias)", &y2, want_nb, TOL);
    tu_free(&dx); tu_free(&dw); tu_free(&db); tu_free(&y); tu_free(&y2);
}
END_TEST

START_TEST(test_linear_backward)
{
    const size_t nx = LT * LI, nw = LO * LI, ny = LT * LO;
    float *x = tu_frand(nx, -1, 1, 11), *w = tu_frand(nw, -.5f, .5f, 12);
    float *dy = tu_frand(ny, -1, 1, 13);
    float *dx0 = tu_frand(nx, -2, 2, 14), *dw0 = tu_frand(nw, -2, 2, 15);
    float *db0 = tu_frand(LO, -2, 2, 16);
    double *gx = tu_dvec(nx), *gw = tu_dvec(nw), *gb = tu_dvec(LO);
    ref_linear_backward(gx, gw, gb, tu_to_double(dy, ny), tu_to_double(x, nx),
                        tu_to_double(w, nw), LT, LI, LO);

    cae_ctx *ctx = tu_ctx();
    tu_dbuf d_x = tu_upload(x, nx), d_w = tu_upload(w, nw);
    tu_dbuf d_dy = tu_upload(dy, ny);
    for (int acc = 0; acc <= 1; acc++) {
        tu_dbuf d_dx = acc ? tu_upload(dx0, nx) : tu_filled(nx, NAN);
        tu_dbuf d_dw = tu_upload(dw0, nw), d_db = tu_upload(db0, LO);
        ck_assert_int_eq(cae_linear_backward(ctx, d_dx.buf, d_dw.buf, d_db.buf,
                                             d_dy.buf, d_x.buf, d_w.buf, LT,
                                             LI, LO, acc), 0);
        tu_expect(acc ? "linear dx (accumulate)" : "linear dx", &d_dx,
               acc ? tu_plus(dx0, gx, nx) : gx, TOL);
        tu_expect("linear dw", &d_dw, tu_plus(dw0, gw, nw), TOL);
        tu_expect("linear db", &d_db, tu_plus(db0, gb, LO), TOL);
        tu_free(&d_dx); tu_free(&d_dw); tu_free(&d_db);
    }
    /* dx and db absent: only dw is written */
    tu_dbuf d_dw = tu_upload(dw0, nw);
    ck_assert_int_eq(cae_linear_backward(ctx, cae_buf_null(), d_dw.buf,
                                         cae_buf_null(), d_dy.buf, d_x.buf,
                                         d_w.buf, LT, LI, LO, 0), 0);
    tu_expect("linear dw (no dx, no db)", &d_dw, tu_plus(dw0, gw, nw), TOL);
    tu_free(&d_dw); tu_free(&d_x); tu_free(&d_w); tu_free(&d_dy);
}
END_TEST

START_TEST(test_colsum_bias_add)
{
    const size_t T = tu_small_mode() ? 201 : 1001, C = 19;
    float *in = tu_frand(T * C, -1, 1, 21), *out0 = tu_frand(C, -3, 3, 22);
    double *want = tu_dvec(C);
    for (size_t c = 0; c < C; c++) {
        want[c] = out0[c];
        for (size_t t = 0; t < T; t++)
            want[c] += in[t * C + c];
    }
    float *b = tu_frand(C, -1, 1, 23);
    double *want_y = tu_dvec(T * C);
    for (size_t i = 0; i < T * C; i++)
        want_y[i] = (double)in[i] + b[i % C];

    cae_ctx *ctx = tu_ctx();
    tu_dbuf d_in = tu_upload(in, T * C), d_out = tu_upload(out0, C);
    tu_dbuf d_b = tu_upload(b, C);
    ck_assert_int_eq(cae_colsum_add(ctx, d_out.buf, d_in.buf, T, C), 0);
    tu_expect("colsum_add", &d_out, want, TOL);
    ck_assert_int_eq(cae_bias_add(ctx, d_in.buf, d_b.buf, T, C), 0);
    tu_expect("bias_add", &d_in, want_y, TOL);
    tu_free(&d_in); tu_free(&d_out); tu_free(&d_b);
}
END_TEST

typedef struct {
    double *x, *w, *b, *g, *y;
    size_t T, I, O;
} linear_fd;

static double linear_loss(void *state)
{
    linear_fd *s = state;
    ref_linear_forward(s->y, s->x, s->w, s->b, s->T, s->I, s->O);
    return tu_dot(s->g, s->y, s->T * s->O);
}

START_TEST(test_linear_fd)
{
    linear_fd s = {NULL, NULL, NULL, NULL, NULL, 5, 4, 3};
    const size_t nx = s.T * s.I, nw = s.O * s.I, ny = s.T * s.O;
    s.x = tu_to_double(tu_frand(nx, -1, 1, 31), nx);
    s.w = tu_to_double(tu_frand(nw, -1, 1, 32), nw);
    s.b = tu_to_double(tu_frand(s.O, -1, 1, 33), s.O);
    s.g = tu_to_double(tu_frand(ny, -1, 1, 34), ny);
    s.y = tu_dvec(ny);
    double *gx = tu_dvec(nx), *gw = tu_dvec(nw), *gb = tu_dvec(s.O);
    ref_linear_backward(gx, gw, gb, s.g, s.x, s.w, s.T, s.I, s.O);
    tu_fd_check("linear ref dx", gx, linear_loss, &s, s.x, nx, FD_TOL);
    tu_fd_check("linear ref dw", gw, linear_loss, &s, s.w, nw, FD_TOL);
    tu_fd_check("linear ref db", gb, linear_loss, &s, s.b, s.O, FD_TOL);
}
END_TEST

static Suite *ops_linear_suite(void)
{
    Suite *s = suite_create("ops_linear");
    TCase *tc = tu_tcase(s, "linear", 120);
    TU_ADD_TESTS(tc, test_linear_forward, test_linear_backward, test_colsum_bias_add,
                 test_linear_fd);
    return s;
}

TU_MAIN(ops_linear_suite)

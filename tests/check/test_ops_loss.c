/* test_ops_loss.c: the losses (src/ops/loss.c): cross-entropy (loss, first
 * argmax correct flag, gradient; invalid labels give NaN and no one-hot) and
 * MSE, against plain C references in double.
 *
 * Device buffers sit at a non-zero offset between canaries (tu_upload /
 * tu_download); odd shapes, ties and vocabulary-sized rows. The reference
 * gradients are checked once against central finite differences of the
 * reference forward.
 */
#include "tests/common/testutil.h"

#include "ops/ops.h"

#include <math.h>

/* ---- cross-entropy reference (double) ---- */

/* per row: loss (NaN for an invalid label), correct (first argmax) and
 * grad = gs * (softmax - onehot); an invalid label gets no one-hot */
static void ref_ce(double *loss, double *correct, double *grad,
                   const double *x, const int *lab, double gs, size_t R,
                   size_t K)
{
    for (size_t r = 0; r < R; r++) {
        const double *xr = x + r * K;
        const int valid = lab[r] >= 0 && (size_t)lab[r] < K;
        size_t arg = 0;
        double m = xr[0], s = 0.0;
        for (size_t k = 1; k < K; k++)
            if (xr[k] > m) {
                m = xr[k];
                arg = k;
            }
        for (size_t k = 0; k < K; k++)
            s += exp(xr[k] - m);
        if (loss)
            loss[r] = valid ? m + log(s) - xr[lab[r]] : NAN;
        if (correct)
            correct[r] = valid && arg == (size_t)lab[r];
        if (grad)
            for (size_t k = 0; k < K; k++)
                grad[r * K + k] =
                    gs * (exp(xr[k] - m) / s - (valid && k == (size_t)lab[r]));
    }
}

/* gs * sum of the valid rows' losses: what the gradient differentiates */
static double ref_ce_total(const double *x, const int *lab, double gs,
                           size_t R, size_t K)
{
    double *loss = tu_dvec(R), t = 0.0;
    ref_ce(loss, NULL, NULL, x, lab, gs, R, K);
    for (size_t r = 0; r < R; r++)
        if (!isnan(loss[r]))
            t += loss[r];
    return gs * t;
}

/* check got against want where want is a number, and NaN where it is NaN */
static void assert_close_nan(const char *what, const float *got,
                             const double *want, size_t n, double tol)
{
    float *g = tu_fvec(n);
    double *w = tu_dvec(n);
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]))
            ck_assert_msg(isnan(got[i]), "%s: element %zu is %g, want NaN",
                          what, i, (double)got[i]);
        g[i] = isnan(want[i]) ? 0.0f : got[i];
        w[i] = isnan(want[i]) ? 0.0 : want[i];
    }
    tu_assert_close(what, g, w, n, tol);
}

/* run cae_cross_entropy on (x, lab) and compare every output */
static void check_ce(const float *x, const int *lab, float gs, size_t R,
                     size_t K, double tol_loss, double tol_grad)
{
    double *xd = tu_to_double(x, R * K), *wl = tu_dvec(R), *wc = tu_dvec(R);
    double *wg = tu_dvec(R * K);
    float *gl = tu_fvec(R), *gc = tu_fvec(R), *gg = tu_fvec(R * K);
    tu_dbuf dx = tu_upload(x, R * K), dlab = tu_upload_int(lab, R);
    tu_dbuf dl = tu_filled(R, 7.0f), dc = tu_filled(R, 7.0f);
    tu_dbuf dg = tu_filled(R * K, 7.0f);

    ref_ce(wl, wc, wg, xd, lab, gs, R, K);
    ck_assert_int_eq(cae_cross_entropy(tu_ctx(), dg.buf, dl.buf, dc.buf,
                                       dx.buf, dlab.buf, gs, R, K), 0);
    tu_download(gl, &dl);
    tu_download(gc, &dc);
    tu_download(gg, &dg);
    assert_close_nan("ce loss", gl, wl, R, tol_loss);
    tu_assert_close("ce correct", gc, wc, R, 0.0);
    tu_assert_close("ce dlogits", gg, wg, R * K, tol_grad);

    /* the losses alone: absent outputs are skipped, present ones written */
    tu_free(&dl);
    dl = tu_filled(R, 7.0f);
    ck_assert_int_eq(cae_cross_entropy(tu_ctx(), cae_buf_null(), dl.buf,
                                       cae_buf_null(), dx.buf, dlab.buf, gs,
                                       R, K), 0);
    tu_download(gl, &dl);
    assert_close_nan("ce loss only", gl, wl, R, tol_loss);

    tu_free(&dx);
    tu_free(&dlab);
    tu_free(&dl);
    tu_free(&dc);
    tu_free(&dg);
}

START_TEST(test_ce_odd)
{
    const size_t R = 37, K = 29;
    float *x = tu_frand(R * K, -4.0f, 4.0f, 11);
    int *lab = tu_ivec(R);
    unsigned s = 5;
    for (size_t r = 0; r < R; r++)
        lab[r] = (int)(tu_next_u(&s) % K);
    /* ties: rows 1 and 2 share their maximum at columns 3 and 17; the first
     * one wins, so only row 2's label counts as correct */
    for (size_t r = 1; r <= 2; r++) {
        x[r * K + 3] = 9.0f;
        x[r * K + 17] = 9.0f;
    }
    lab[1] = 17;
    lab[2] = 3;
    /* invalid labels on the first and last rows: read there, they would
     * find the finite canaries around the logits instead of giving NaN */
    lab[0] = -1;
    lab[R - 1] = (int)K;
    lab[R / 2] = 1 << 30;
    check_ce(x, lab, 1.0f / 37.0f, R, K, 1e-5, 1e-6);
}
END_TEST

START_TEST(test_ce_tie_flags)
{
    /* the host reference itself on ties, so check_ce proves what we mean */
    const double x[6] = {1.0, 5.0, 5.0, -2.0, 5.0, 0.0};
    const int lab[2] = {2, 1};
    double c[2];
    ref_ce(NULL, c, NULL, x, lab, 1.0, 1, 6);
    ck_assert(c[0] == 0.0);
    ref_ce(NULL, c, NULL, x, lab + 1, 1.0, 1, 6);
    ck_assert(c[0] == 1.0);
}
END_TEST

START_TEST(test_ce_vocab)
{
    /* full vocabulary rows, wide logits: the logsumexp must stay exact-ish */
    const size_t R = 5, K = 8192;
    float *x = tu_frand(R * K, -15.0f, 15.0f, 12);
    int lab[5] = {0, 8191, 4097, 17, 6000};
    x[2 * K + 4097] = 40.0f; /* a confident, correct row */
    check_ce(x, lab, 0.5f, R, K, 1e-5, 1e-6);
}
END_TEST

/* ref_ce_total of the state's logits */
typedef struct {
    double *x;
    const int *lab;
    double gs;
    size_t R, K;
} ce_fd;

static double ce_loss(void *state)
{
    ce_fd *s = state;
    return ref_ce_total(s->x, s->lab, s->gs, s->R, s->K);
}

START_TEST(test_ce_fd)
{
    /* the reference gradient against finite differences of its forward */
    const size_t R = 4, K = 7;
    const int lab[4] = {2, 6, -1, 0};
    ce_fd s = {tu_to_double(tu_frand(R * K, -3.0f, 3.0f, 13), R * K), lab, 0.3, R, K};
    double *g = tu_dvec(R * K), *fd = tu_dvec(R * K);
    ref_ce(NULL, NULL, g, s.x, lab, s.gs, R, K);
    tu_fd_grad(fd, ce_loss, &s, s.x, R * K);
    /* row 2 (invalid label) is outside the loss: its gradient is the bare
     * softmax, not a derivative; compare the other rows */
    for (size_t k = 0; k < K; k++)
        fd[2 * K + k] = g[2 * K + k];
    tu_assert_close_d("ce reference vs fd", g, fd, R * K, 1e-8);
}
END_TEST

START_TEST(test_ce_refuses)
{
    tu_dbuf d = tu_filled(4, 0.0f);
    ck_assert_int_eq(cae_cross_entropy(tu_ctx(), d.buf, d.buf, d.buf, d.buf,
                                       d.buf, 1.0f, 1, 0), -1);
    tu_free(&d);
}
END_TEST

/* ---- MSE ---- */

static double ref_mse_total(const double *p, const double *t, double gs,
                            size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (p[i] - t[i]) * (p[i] - t[i]);
    return gs * s;
}

START_TEST(test_mse)
{
    const size_t n = 1001;
    const float gs = 2.0f / 1001.0f;
    float *p = tu_frand(n, -2.0f, 2.0f, 21), *t = tu_frand(n, -2.0f, 2.0f, 22);
    float *gsq = tu_fvec(n), *gd = tu_fvec(n);
    double *wsq = tu_dvec(n), *wd = tu_dvec(n);
    tu_dbuf dp = tu_upload(p, n), dt = tu_upload(t, n);
    tu_dbuf dsq = tu_filled(n, 7.0f), dd = tu_filled(n, 7.0f);
    for (size_t i = 0; i < n; i++) {
        const double d = (double)p[i] - t[i];
        wsq[i] = d * d;
        wd[i] = (double)gs * 2.0 * d;
    }
    ck_assert_int_eq(cae_mse(tu_ctx(), dd.buf, dsq.buf, dp.buf, dt.buf, gs, n), 0);
    tu_download(gsq, &dsq);
    tu_download(gd, &dd);
    tu_assert_close("mse sq", gsq, wsq, n, 1e-6);
    tu_assert_close("mse dpred", gd, wd, n, 1e-6);

    /* the gradient alone */
    tu_free(&dd);
    dd = tu_filled(n, 7.0f);
    ck_assert_int_eq(cae_mse(tu_ctx(), dd.buf, cae_buf_null(), dp.buf, dt.buf,
                             gs, n), 0);
    tu_download(gd, &dd);
    tu_assert_close("mse dpred only", gd, wd, n, 1e-6);

    tu_free(&dp);
    tu_free(&dt);
    tu_free(&dsq);
    tu_free(&dd);
}
END_TEST

/* ref_mse_total of the state's predictions */
typedef struct {
    double *p, *t, gs;
    size_t n;
} mse_fd;

static double mse_loss(void *state)
{
    mse_fd *s = state;
    return ref_mse_total(s->p, s->t, s->gs, s->n);
}

START_TEST(test_mse_fd)
{
    const size_t n = 9;
    mse_fd s = {tu_to_double(tu_frand(n, -1.0f, 1.0f, 23), n),
                tu_to_double(tu_frand(n, -1.0f, 1.0f, 24), n), 0.7, n};
    double *g = tu_dvec(n), *fd = tu_dvec(n);
    for (size_t i = 0; i < n; i++)
        g[i] = s.gs * 2.0 * (s.p[i] - s.t[i]);
    tu_fd_grad(fd, mse_loss, &s, s.p, n);
    tu_assert_close_d("mse reference vs fd", g, fd, n, 1e-8);
}
END_TEST

static Suite *ops_loss_suite(void)
{
    Suite *s = suite_create("ops_loss");
    TCase *tc = tu_tcase(s, "cross_entropy", 120); /* a cold PoCL compile is slow */
    TU_ADD_TESTS(tc, test_ce_odd, test_ce_tie_flags, test_ce_vocab, test_ce_fd, test_ce_refuses);
    tc = tu_tcase(s, "mse", 120);
    TU_ADD_TESTS(tc, test_mse, test_mse_fd);
    return s;
}

TU_MAIN(ops_loss_suite)

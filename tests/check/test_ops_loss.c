/* test_ops_loss.c: cross-entropy, MSE, the deterministic reductions, the
 * token movers (gather, scatter-add, block copies, broadcast, patchify) and
 * the sin-cos position table, against plain C references in double.
 *
 * Device buffers sit at a non-zero offset between canaries (tu_upload /
 * tu_download). Accumulating ops start from non-zero values. The reference
 * gradients of cross-entropy, MSE and gather are checked once against
 * central finite differences of the reference forward. The reductions are
 * also compared bit for bit with a host replica of their summation order:
 * the sum must be the same float on every device.
 *
 * CAE_TEST_SMALL=1 skips the one large reduction (for oclgrind runs).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "testutil.h"

#define FD_H 1e-5 /* central-difference step, in double */

/* ---- helpers ---- */

static float *alloc_f(size_t n)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

static double *alloc_d(size_t n)
{
    double *x = calloc(n ? n : 1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

static int *alloc_i(size_t n)
{
    int *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

static float *rand_f(size_t n, float lo, float hi, unsigned seed)
{
    float *x = alloc_f(n);
    tu_random(x, n, lo, hi, seed);
    return x;
}

static double *to_d(const float *x, size_t n)
{
    double *d = alloc_d(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* a small deterministic integer generator for labels and indices */
static unsigned next_u(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* J distinct values in [0, rows) per sample (a partial Fisher-Yates) */
static int *unique_idx(size_t B, size_t J, size_t rows, unsigned seed)
{
    int *idx = alloc_i(B * J), *perm = alloc_i(rows);
    for (size_t b = 0; b < B; b++) {
        for (size_t r = 0; r < rows; r++)
            perm[r] = (int)r;
        for (size_t j = 0; j < J; j++) {
            size_t k = j + next_u(&seed) % (rows - j);
            int t = perm[j];
            perm[j] = perm[k];
            perm[k] = t;
            idx[b * J + j] = perm[j];
        }
    }
    free(perm);
    return idx;
}

/* max |got - want| <= tol * max(1, max |want|), both in double */
static void assert_close_d(const char *what, const double *got,
                           const double *want, size_t n, double tol)
{
    double scale = 1.0, err = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        const double e = fabs(got[i] - want[i]);
        if (!(e <= err)) { /* also catches NaN */
            err = e;
            at = i;
        }
    }
    ck_assert_msg(err <= tol * scale, "%s: max error %g at %zu (got %g want %g)",
                  what, err, at, n ? got[at] : 0.0, n ? want[at] : 0.0);
}

/* exact equality, element by element, NaN matching NaN */
static void assert_equal_f(const char *what, const float *got,
                           const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i] || (isnan(got[i]) && isnan(want[i])),
                      "%s: element %zu is %.9g, want %.9g", what, i,
                      (double)got[i], (double)want[i]);
}

static int small_run(void)
{
    const char *s = getenv("CAE_TEST_SMALL");
    return s && *s && strcmp(s, "0") != 0;
}

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
    double *loss = alloc_d(R), t = 0.0;
    ref_ce(loss, NULL, NULL, x, lab, gs, R, K);
    for (size_t r = 0; r < R; r++)
        if (!isnan(loss[r]))
            t += loss[r];
    free(loss);
    return gs * t;
}

/* check got against want where want is a number, and NaN where it is NaN */
static void assert_close_nan(const char *what, const float *got,
                             const double *want, size_t n, double tol)
{
    float *g = alloc_f(n);
    double *w = alloc_d(n);
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]))
            ck_assert_msg(isnan(got[i]), "%s: element %zu is %g, want NaN",
                          what, i, (double)got[i]);
        g[i] = isnan(want[i]) ? 0.0f : got[i];
        w[i] = isnan(want[i]) ? 0.0 : want[i];
    }
    tu_assert_close(what, g, w, n, tol);
    free(g);
    free(w);
}

/* run cae_cross_entropy on (x, lab) and compare every output */
static void check_ce(const float *x, const int *lab, float gs, size_t R,
                     size_t K, double tol_loss, double tol_grad)
{
    double *xd = to_d(x, R * K), *wl = alloc_d(R), *wc = alloc_d(R);
    double *wg = alloc_d(R * K);
    float *gl = alloc_f(R), *gc = alloc_f(R), *gg = alloc_f(R * K);
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
    free(xd);
    free(wl);
    free(wc);
    free(wg);
    free(gl);
    free(gc);
    free(gg);
}

START_TEST(test_ce_odd)
{
    const size_t R = 37, K = 29;
    float *x = rand_f(R * K, -4.0f, 4.0f, 11);
    int *lab = alloc_i(R);
    unsigned s = 5;
    for (size_t r = 0; r < R; r++)
        lab[r] = (int)(next_u(&s) % K);
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
    free(x);
    free(lab);
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
    float *x = rand_f(R * K, -15.0f, 15.0f, 12);
    int lab[5] = {0, 8191, 4097, 17, 6000};
    x[2 * K + 4097] = 40.0f; /* a confident, correct row */
    check_ce(x, lab, 0.5f, R, K, 1e-5, 1e-6);
    free(x);
}
END_TEST

START_TEST(test_ce_fd)
{
    /* the reference gradient against finite differences of its forward */
    const size_t R = 4, K = 7;
    const double gs = 0.3;
    float *xf = rand_f(R * K, -3.0f, 3.0f, 13);
    double *x = to_d(xf, R * K), *g = alloc_d(R * K), *fd = alloc_d(R * K);
    const int lab[4] = {2, 6, -1, 0};
    ref_ce(NULL, NULL, g, x, lab, gs, R, K);
    for (size_t i = 0; i < R * K; i++) {
        const double x0 = x[i];
        double lp, lm;
        x[i] = x0 + FD_H;
        lp = ref_ce_total(x, lab, gs, R, K);
        x[i] = x0 - FD_H;
        lm = ref_ce_total(x, lab, gs, R, K);
        x[i] = x0;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    /* row 2 (invalid label) is outside the loss: its gradient is the bare
     * softmax, not a derivative; compare the other rows */
    for (size_t k = 0; k < K; k++)
        fd[2 * K + k] = g[2 * K + k];
    assert_close_d("ce reference vs fd", g, fd, R * K, 1e-8);
    free(xf);
    free(x);
    free(g);
    free(fd);
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
    float *p = rand_f(n, -2.0f, 2.0f, 21), *t = rand_f(n, -2.0f, 2.0f, 22);
    float *gsq = alloc_f(n), *gd = alloc_f(n);
    double *wsq = alloc_d(n), *wd = alloc_d(n);
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
    free(p);
    free(t);
    free(gsq);
    free(gd);
    free(wsq);
    free(wd);
}
END_TEST

START_TEST(test_mse_fd)
{
    const size_t n = 9;
    const double gs = 0.7;
    float *pf = rand_f(n, -1.0f, 1.0f, 23), *tf = rand_f(n, -1.0f, 1.0f, 24);
    double *p = to_d(pf, n), *t = to_d(tf, n), *g = alloc_d(n), *fd = alloc_d(n);
    for (size_t i = 0; i < n; i++) {
        const double p0 = p[i];
        double lp, lm;
        g[i] = gs * 2.0 * (p[i] - t[i]);
        p[i] = p0 + FD_H;
        lp = ref_mse_total(p, t, gs, n);
        p[i] = p0 - FD_H;
        lm = ref_mse_total(p, t, gs, n);
        p[i] = p0;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    assert_close_d("mse reference vs fd", g, fd, n, 1e-8);
    free(pf);
    free(tf);
    free(p);
    free(t);
    free(g);
    free(fd);
}
END_TEST

/* ---- reductions ---- */

/* The summation order of reduce.c / reduce.cl, replayed in host float:
 * chunks of about 4096 (at most 16384 chunks), each summed in blocks of 64,
 * then the partials summed the same way. Any device must match it exactly. */
static float replica_range(const float *x, size_t lo, size_t hi, int squares)
{
    float total = 0.0f;
    for (size_t b0 = lo; b0 < hi; b0 += 64) {
        const size_t b1 = b0 + 64 < hi ? b0 + 64 : hi;
        float block = 0.0f;
        for (size_t i = b0; i < b1; i++) {
            const float v = squares ? x[i] * x[i] : x[i];
            block += v;
        }
        total += block;
    }
    return total;
}

static float replica_sum(const float *x, size_t n, int squares)
{
    size_t c = (n + 4095) / 4096, len;
    float *part, r;
    if (c > 16384)
        c = 16384;
    if (c == 0)
        c = 1;
    len = (n + c - 1) / c;
    if (len == 0)
        len = 1;
    c = (n + len - 1) / len;
    if (c == 0)
        c = 1;
    ck_assert_uint_eq(c, cae_reduce_scratch_elems(n));
    part = alloc_f(c);
    for (size_t i = 0; i < c; i++) {
        const size_t lo = i * len, hi = lo + len < n ? lo + len : n;
        part[i] = replica_range(x, lo, hi, squares);
    }
    r = replica_range(part, 0, c, 0);
    free(part);
    return r;
}

/* one device reduction (sum or sum of squares) of x[n] */
static float device_sum(const tu_dbuf *dx, size_t n, int squares)
{
    const size_t ns = cae_reduce_scratch_elems(n);
    tu_dbuf out = tu_filled(1, 5.0f), scratch = tu_filled(ns, 0.0f);
    float r;
    ck_assert_int_eq((squares ? cae_sum_squares : cae_sum)(
                         tu_ctx(), out.buf, dx->buf, n, scratch.buf), 0);
    tu_download(&r, &out);
    tu_free(&out);
    tu_free(&scratch);
    return r;
}

/* sum and sum of squares of x: the replica exactly, and double within the
 * error bound of a blocked float sum */
static void check_reduce(const float *x, size_t n)
{
    tu_dbuf dx = tu_upload(x, n);
    for (int squares = 0; squares <= 1; squares++) {
        double want = 0.0, mag = 0.0;
        float got = device_sum(&dx, n, squares);
        for (size_t i = 0; i < n; i++) {
            const double v = squares ? (double)x[i] * x[i] : x[i];
            want += v;
            mag += fabs(v);
        }
        ck_assert_msg(got == replica_sum(x, n, squares),
                      "n=%zu squares=%d: %.9g differs from the replica %.9g",
                      n, squares, (double)got,
                      (double)replica_sum(x, n, squares));
        ck_assert_msg(fabs(got - want) <= 1e-5 * mag + 1e-30,
                      "n=%zu squares=%d: %.9g, want %.12g", n, squares,
                      (double)got, want);
        /* and again: the same bits */
        ck_assert(device_sum(&dx, n, squares) == got);
    }
    tu_free(&dx);
}

START_TEST(test_reduce_sizes)
{
    const size_t sizes[] = {1, 2, 63, 65, 4095, 4096, 4097, 100003};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        float *x = rand_f(sizes[s], -1.0f, 1.0f, 31 + (unsigned)s);
        check_reduce(x, sizes[s]);
        free(x);
    }
}
END_TEST

START_TEST(test_reduce_exact)
{
    /* small integers: every partial sum is an exact float, so the device
     * must return the exact integer sums */
    const size_t n = 100003;
    float *x = alloc_f(n);
    long long sum = 0, sq = 0;
    unsigned s = 3;
    tu_dbuf dx;
    for (size_t i = 0; i < n; i++) {
        const int v = (int)(next_u(&s) % 17) - 8;
        x[i] = (float)v;
        sum += v;
        sq += (long long)v * v;
    }
    dx = tu_upload(x, n);
    ck_assert(device_sum(&dx, n, 0) == (float)sum);
    ck_assert(device_sum(&dx, n, 1) == (float)sq);
    ck_assert((double)(float)sum == (double)sum); /* exactly representable */
    tu_free(&dx);
    free(x);
}
END_TEST

START_TEST(test_reduce_empty)
{
    tu_dbuf out = tu_filled(1, 5.0f), in = tu_filled(1, 3.0f);
    tu_dbuf scratch = tu_filled(cae_reduce_scratch_elems(0), 0.0f);
    float r;
    ck_assert_int_eq(cae_sum(tu_ctx(), out.buf, in.buf, 0, scratch.buf), 0);
    tu_download(&r, &out);
    ck_assert(r == 0.0f);
    tu_free(&out);
    tu_free(&in);
    tu_free(&scratch);
}
END_TEST

START_TEST(test_reduce_large)
{
    /* past 16384 * 4096 elements the chunk count is capped and chunks grow */
    const size_t n = (size_t)16384 * 4096 + 12345;
    float *x;
    if (small_run())
        return;
    ck_assert_uint_eq(cae_reduce_scratch_elems(n), 16384);
    x = rand_f(n, -1.0f, 1.0f, 41);
    check_reduce(x, n);
    free(x);
}
END_TEST

START_TEST(test_scale)
{
    const size_t n = 1001;
    const float alpha = -0.37f;
    float *x = rand_f(n, -3.0f, 3.0f, 51), *got = alloc_f(n), *want = alloc_f(n);
    tu_dbuf dx = tu_upload(x, n);
    for (size_t i = 0; i < n; i++)
        want[i] = x[i] * alpha;
    ck_assert_int_eq(cae_scale(tu_ctx(), dx.buf, alpha, n), 0);
    tu_download(got, &dx);
    assert_equal_f("scale", got, want, n);
    tu_free(&dx);
    free(x);
    free(got);
    free(want);
}
END_TEST

/* ---- tokens ---- */

/* out[b,j,:] = src[b*src_rows + idx[b,j], :] in double */
static void ref_gather(double *out, const double *src, size_t src_rows,
                       const int *idx, size_t B, size_t J, size_t C)
{
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < J; j++)
            for (size_t c = 0; c < C; c++)
                out[(b * J + j) * C + c] =
                    src[(b * src_rows + (size_t)idx[b * J + j]) * C + c];
}

/* run one gather (both modes) and compare exactly with a float replica */
static void check_gather(size_t src_rows, size_t table_rows, const int *idx,
                         size_t B, size_t J, size_t C)
{
    const size_t no = B * J * C, ns = table_rows * C;
    float *src = rand_f(ns, -1.0f, 1.0f, 61), *init = rand_f(no, -1.0f, 1.0f, 62);
    float *got = alloc_f(no), *want = alloc_f(no);
    tu_dbuf ds = tu_upload(src, ns), di = tu_upload_int(idx, B * J);
    for (int acc = 0; acc <= 1; acc++) {
        tu_dbuf dout = tu_upload(init, no);
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < J; j++)
                for (size_t c = 0; c < C; c++) {
                    const size_t o = (b * J + j) * C + c;
                    const float v = src[(b * src_rows + (size_t)idx[b * J + j]) * C + c];
                    want[o] = acc ? init[o] + v : v;
                }
        ck_assert_int_eq(cae_gather_rows(tu_ctx(), dout.buf, ds.buf, src_rows,
                                         di.buf, B, J, C, acc), 0);
        tu_download(got, &dout);
        assert_equal_f(acc ? "gather +=" : "gather =", got, want, no);
        tu_free(&dout);
    }
    tu_free(&ds);
    tu_free(&di);
    free(src);
    free(init);
    free(got);
    free(want);
}

START_TEST(test_gather)
{
    const size_t B = 3, J = 5, C = 29, src_rows = 11;
    int *idx = unique_idx(B, J, src_rows, 7);
    check_gather(src_rows, B * src_rows, idx, B, J, C);
    free(idx);
}
END_TEST

START_TEST(test_gather_shared)
{
    /* src_rows 0: one table of 17 rows serves every sample; repeats allowed */
    const size_t B = 3, J = 7, C = 29, rows = 17;
    int *idx = alloc_i(B * J);
    unsigned s = 9;
    for (size_t i = 0; i < B * J; i++)
        idx[i] = (int)(next_u(&s) % rows);
    idx[0] = idx[1] = 16;
    check_gather(0, rows, idx, B, J, C);
    free(idx);
}
END_TEST

START_TEST(test_gather_bad_index)
{
    /* an index outside the source yields a NaN row in a gather and is
     * skipped by the scatter-add, never a stray read or write */
    enum { B = 2, J = 3, C = 5, ROWS = 4, NS = B * ROWS * C, NO = B * J * C };
    const int idx[B * J] = {0, -1, 3, 4, 2, 1};
    float *src = rand_f(NS, -1.0f, 1.0f, 63), got[NS], want[NS];
    tu_dbuf ds = tu_upload(src, NS), di = tu_upload_int(idx, B * J);
    tu_dbuf dout = tu_filled(NO, 0.0f);
    ck_assert_int_eq(cae_gather_rows(tu_ctx(), dout.buf, ds.buf, ROWS, di.buf,
                                     B, J, C, 0), 0);
    tu_download(got, &dout);
    for (int r = 0; r < B * J; r++)
        for (int c = 0; c < C; c++) {
            const int bad = idx[r] < 0 || idx[r] >= ROWS;
            ck_assert_msg(bad == !!isnan(got[r * C + c]), "row %d col %d", r, c);
        }

    tu_free(&dout);
    dout = tu_filled(NO, 2.0f);
    memcpy(want, src, sizeof want);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++) {
            const int n = idx[b * J + j];
            if (n >= 0 && n < ROWS)
                for (int c = 0; c < C; c++)
                    want[(b * ROWS + n) * C + c] += 2.0f;
        }
    ck_assert_int_eq(cae_scatter_rows_add(tu_ctx(), ds.buf, ROWS, dout.buf,
                                          di.buf, B, J, C), 0);
    tu_download(got, &ds);
    assert_equal_f("scatter with bad indices", got, want, NS);
    tu_free(&ds);
    tu_free(&di);
    tu_free(&dout);
    free(src);
}
END_TEST

START_TEST(test_scatter_add)
{
    const size_t B = 3, J = 5, C = 29, src_rows = 11;
    const size_t ns = B * src_rows * C, no = B * J * C;
    int *idx = unique_idx(B, J, src_rows, 8);
    float *init = rand_f(ns, -1.0f, 1.0f, 64), *dout = rand_f(no, -1.0f, 1.0f, 65);
    float *got = alloc_f(ns), *want = alloc_f(ns);
    tu_dbuf dsrc = tu_upload(init, ns), dd = tu_upload(dout, no);
    tu_dbuf di = tu_upload_int(idx, B * J);
    memcpy(want, init, ns * sizeof *want);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < J; j++)
            for (size_t c = 0; c < C; c++)
                want[(b * src_rows + (size_t)idx[b * J + j]) * C + c] +=
                    dout[(b * J + j) * C + c];
    ck_assert_int_eq(cae_scatter_rows_add(tu_ctx(), dsrc.buf, src_rows, dd.buf,
                                          di.buf, B, J, C), 0);
    tu_download(got, &dsrc);
    assert_equal_f("scatter +=", got, want, ns);
    ck_assert_int_eq(cae_scatter_rows_add(tu_ctx(), dsrc.buf, 0, dd.buf, di.buf,
                                          B, J, C), -1);
    tu_free(&dsrc);
    tu_free(&dd);
    tu_free(&di);
    free(idx);
    free(init);
    free(dout);
    free(got);
    free(want);
}
END_TEST

START_TEST(test_gather_fd)
{
    /* scatter-add is the gradient of gather: check the reference pair on
     * L(src) = sum w * gather(src) */
    const size_t B = 2, J = 3, C = 4, src_rows = 5, ns = B * src_rows * C;
    const size_t no = B * J * C;
    int *idx = unique_idx(B, J, src_rows, 4);
    float *wf = rand_f(no, -1.0f, 1.0f, 66), *sf = rand_f(ns, -1.0f, 1.0f, 67);
    double *w = to_d(wf, no), *src = to_d(sf, ns), *out = alloc_d(no);
    double *g = alloc_d(ns), *fd = alloc_d(ns);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < J; j++)
            for (size_t c = 0; c < C; c++)
                g[(b * src_rows + (size_t)idx[b * J + j]) * C + c] +=
                    w[(b * J + j) * C + c];
    for (size_t i = 0; i < ns; i++) {
        const double s0 = src[i];
        double lp = 0.0, lm = 0.0;
        src[i] = s0 + FD_H;
        ref_gather(out, src, src_rows, idx, B, J, C);
        for (size_t o = 0; o < no; o++)
            lp += w[o] * out[o];
        src[i] = s0 - FD_H;
        ref_gather(out, src, src_rows, idx, B, J, C);
        for (size_t o = 0; o < no; o++)
            lm += w[o] * out[o];
        src[i] = s0;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    assert_close_d("scatter reference vs fd of gather", g, fd, ns, 1e-8);
    free(idx);
    free(wf);
    free(sf);
    free(w);
    free(src);
    free(out);
    free(g);
    free(fd);
}
END_TEST

START_TEST(test_copy_blocks)
{
    const size_t B = 4, n = 23, dst_stride = 31, src_stride = 27;
    const size_t nd = B * dst_stride, ns = B * src_stride;
    float *src = rand_f(ns, -1.0f, 1.0f, 71), *init = rand_f(nd, -1.0f, 1.0f, 72);
    float *got = alloc_f(nd), *want = alloc_f(nd);
    tu_dbuf ds = tu_upload(src, ns);
    for (int acc = 0; acc <= 1; acc++) {
        tu_dbuf dd = tu_upload(init, nd);
        memcpy(want, init, nd * sizeof *want); /* the gaps stay as they were */
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < n; i++) {
                const float v = src[b * src_stride + i];
                want[b * dst_stride + i] = acc ? init[b * dst_stride + i] + v : v;
            }
        ck_assert_int_eq(cae_copy_blocks(tu_ctx(), dd.buf, dst_stride, ds.buf,
                                         src_stride, B, n, acc), 0);
        tu_download(got, &dd);
        assert_equal_f(acc ? "copy_blocks +=" : "copy_blocks =", got, want, nd);
        tu_free(&dd);
    }
    tu_free(&ds);
    free(src);
    free(init);
    free(got);
    free(want);
}
END_TEST

START_TEST(test_broadcast_row)
{
    const size_t R = 37, C = 29;
    float *row = rand_f(C, -1.0f, 1.0f, 73), *got = alloc_f(R * C);
    float *want = alloc_f(R * C);
    tu_dbuf dr = tu_upload(row, C), dout = tu_filled(R * C, 7.0f);
    for (size_t r = 0; r < R; r++)
        memcpy(want + r * C, row, C * sizeof *row);
    ck_assert_int_eq(cae_broadcast_row(tu_ctx(), dout.buf, dr.buf, R, C), 0);
    tu_download(got, &dout);
    assert_equal_f("broadcast_row", got, want, R * C);
    tu_free(&dr);
    tu_free(&dout);
    free(row);
    free(got);
    free(want);
}
END_TEST

START_TEST(test_patchify)
{
    /* S=12, P=4: a 3x3 grid; the indices are out of raster order and skip
     * patches. Each extracted patch, dotted with a flattened conv weight
     * [D,3,P,P], must equal that stride-P convolution at the patch. */
    enum { B = 2, J = 5, S = 12, P = 4, G = S / P, D = 7, E = 3 * P * P };
    const int idx[B * J] = {7, 0, 4, 8, 2, 5, 1, 6, 3, 8};
    float *img = rand_f((size_t)B * 3 * S * S, -1.0f, 1.0f, 81);
    float *w = rand_f((size_t)D * E, -1.0f, 1.0f, 82);
    float *got = alloc_f((size_t)B * J * E), *want = alloc_f((size_t)B * J * E);
    tu_dbuf dimg = tu_upload(img, (size_t)B * 3 * S * S);
    tu_dbuf di = tu_upload_int(idx, B * J), dout = tu_filled((size_t)B * J * E, 7.0f);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++)
            for (int c = 0; c < 3; c++)
                for (int py = 0; py < P; py++)
                    for (int px = 0; px < P; px++) {
                        const int n = idx[b * J + j], gy = n / G, gx = n % G;
                        want[((b * J + j) * 3 + c) * P * P + py * P + px] =
                            img[((b * 3 + c) * S + gy * P + py) * S + gx * P + px];
                    }
    ck_assert_int_eq(cae_patchify(tu_ctx(), dout.buf, dimg.buf, di.buf, B, J,
                                  S, P), 0);
    tu_download(got, &dout);
    assert_equal_f("patchify", got, want, (size_t)B * J * E);

    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++)
            for (int d = 0; d < D; d++) {
                const int n = idx[b * J + j], oy = (n / G) * P, ox = (n % G) * P;
                double conv = 0.0, dot = 0.0;
                /* the convolution, written over image coordinates */
                for (int c = 0; c < 3; c++)
                    for (int y = oy; y < oy + P; y++)
                        for (int x = ox; x < ox + P; x++)
                            conv += (double)w[((d * 3 + c) * P + (y - oy)) * P + (x - ox)] *
                                    img[((b * 3 + c) * S + y) * S + x];
                for (int e = 0; e < E; e++)
                    dot += (double)w[d * E + e] * got[(b * J + j) * E + e];
                ck_assert_msg(fabs(conv - dot) <= 1e-12,
                              "patch %d of sample %d, channel %d: %g vs %g", j,
                              b, d, dot, conv);
            }

    ck_assert_int_eq(cae_patchify(tu_ctx(), dout.buf, dimg.buf, di.buf, B, J,
                                  13, P), -1);
    tu_free(&dimg);
    tu_free(&di);
    tu_free(&dout);
    free(img);
    free(w);
    free(got);
    free(want);
}
END_TEST

START_TEST(test_patchify_bad_index)
{
    enum { S = 8, P = 4, E = 3 * P * P };
    const int idx[3] = {3, 4, -1}; /* a 2x2 grid: 4 and -1 are outside */
    float *img = rand_f(3 * S * S, -1.0f, 1.0f, 83), got[3 * E];
    tu_dbuf dimg = tu_upload(img, 3 * S * S), di = tu_upload_int(idx, 3);
    tu_dbuf dout = tu_filled(3 * E, 0.0f);
    ck_assert_int_eq(cae_patchify(tu_ctx(), dout.buf, dimg.buf, di.buf, 1, 3,
                                  S, P), 0);
    tu_download(got, &dout);
    for (int e = 0; e < E; e++) {
        ck_assert(!isnan(got[e]));
        ck_assert(isnan(got[E + e]) && isnan(got[2 * E + e]));
    }
    tu_free(&dimg);
    tu_free(&di);
    tu_free(&dout);
    free(img);
}
END_TEST

/* ---- sin-cos position table ---- */

START_TEST(test_sincos_values)
{
    /* G=3, C=8: f=2, w = {1, 1/100}; row n+1 holds patch n = r*3 + c as
     * [sin r, sin r/100, cos r, cos r/100, sin c, sin c/100, cos c, cos c/100] */
    static const double want[10][8] = {
        {0, 0, 0, 0, 0, 0, 0, 0}, /* cls */
        {0, 0, 1, 1, 0, 0, 1, 1}, /* r=0 c=0 */
        {0, 0, 1, 1, 0.8414709848078965, 0.009999833334166664,
         0.5403023058681398, 0.9999500004166653}, /* r=0 c=1 */
        {0, 0, 1, 1, 0.9092974268256817, 0.019998666693333080,
         -0.4161468365471424, 0.9998000066665778}, /* r=0 c=2 */
        {0.8414709848078965, 0.009999833334166664, 0.5403023058681398,
         0.9999500004166653, 0, 0, 1, 1}, /* r=1 c=0 */
        {0.8414709848078965, 0.009999833334166664, 0.5403023058681398,
         0.9999500004166653, 0.8414709848078965, 0.009999833334166664,
         0.5403023058681398, 0.9999500004166653}, /* r=1 c=1 */
        {0.8414709848078965, 0.009999833334166664, 0.5403023058681398,
         0.9999500004166653, 0.9092974268256817, 0.019998666693333080,
         -0.4161468365471424, 0.9998000066665778}, /* r=1 c=2 */
        {0.9092974268256817, 0.019998666693333080, -0.4161468365471424,
         0.9998000066665778, 0, 0, 1, 1}, /* r=2 c=0 */
        {0.9092974268256817, 0.019998666693333080, -0.4161468365471424,
         0.9998000066665778, 0.8414709848078965, 0.009999833334166664,
         0.5403023058681398, 0.9999500004166653}, /* r=2 c=1 */
        {0.9092974268256817, 0.019998666693333080, -0.4161468365471424,
         0.9998000066665778, 0.9092974268256817, 0.019998666693333080,
         -0.4161468365471424, 0.9998000066665778}, /* r=2 c=2 */
    };
    float t[10 * 8];
    ck_assert_int_eq(cae_sincos_table(t, 3, 8), 0);
    for (int i = 0; i < 80; i++)
        ck_assert_msg(t[i] == (float)want[i / 8][i % 8],
                      "row %d col %d: %.9g, want %.9g", i / 8, i % 8,
                      (double)t[i], want[i / 8][i % 8]);
}
END_TEST

START_TEST(test_sincos_shape)
{
    /* the ViT-B table: unit (sin, cos) pairs, zero cls row, and widths that
     * are not multiples of 4 refused */
    const size_t G = 14, C = 768, f = C / 4;
    float *t = alloc_f((G * G + 1) * C), dummy[64];
    ck_assert_int_eq(cae_sincos_table(t, G, C), 0);
    for (size_t c = 0; c < C; c++)
        ck_assert(t[c] == 0.0f);
    for (size_t n = 0; n < G * G; n++)
        for (size_t j = 0; j < f; j++) {
            const float *row = t + (n + 1) * C;
            const double a = (double)row[j] * row[j] + (double)row[f + j] * row[f + j];
            const double b = (double)row[2 * f + j] * row[2 * f + j] +
                             (double)row[3 * f + j] * row[3 * f + j];
            ck_assert(fabs(a - 1.0) < 1e-6 && fabs(b - 1.0) < 1e-6);
        }
    /* the last frequency: w = 1/10000^((f-1)/f) */
    {
        const size_t n = G * G - 1; /* r = c = 13 */
        const double w = pow(10000.0, -(double)(f - 1) / (double)f);
        ck_assert(fabs(t[(n + 1) * C + f - 1] - sin(13.0 * w)) < 1e-7);
        ck_assert(fabs(t[(n + 1) * C + C - 1] - cos(13.0 * w)) < 1e-7);
    }
    ck_assert_int_eq(cae_sincos_table(dummy, 2, 6), -1);
    ck_assert_int_eq(cae_sincos_table(dummy, 2, 10), -1);
    free(t);
}
END_TEST

static TCase *tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120); /* a cold PoCL compile is slow */
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *loss_suite(void)
{
    Suite *s = suite_create("ops_loss");
    TCase *tc = tcase(s, "cross_entropy");
    tcase_add_test(tc, test_ce_odd);
    tcase_add_test(tc, test_ce_tie_flags);
    tcase_add_test(tc, test_ce_vocab);
    tcase_add_test(tc, test_ce_fd);
    tcase_add_test(tc, test_ce_refuses);
    tc = tcase(s, "mse");
    tcase_add_test(tc, test_mse);
    tcase_add_test(tc, test_mse_fd);
    tc = tcase(s, "reduce");
    tcase_add_test(tc, test_reduce_sizes);
    tcase_add_test(tc, test_reduce_exact);
    tcase_add_test(tc, test_reduce_empty);
    tcase_add_test(tc, test_reduce_large);
    tcase_add_test(tc, test_scale);
    tc = tcase(s, "tokens");
    tcase_add_test(tc, test_gather);
    tcase_add_test(tc, test_gather_shared);
    tcase_add_test(tc, test_gather_bad_index);
    tcase_add_test(tc, test_scatter_add);
    tcase_add_test(tc, test_gather_fd);
    tcase_add_test(tc, test_copy_blocks);
    tcase_add_test(tc, test_broadcast_row);
    tcase_add_test(tc, test_patchify);
    tcase_add_test(tc, test_patchify_bad_index);
    tc = tcase(s, "posembed");
    tcase_add_test(tc, test_sincos_values);
    tcase_add_test(tc, test_sincos_shape);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loss_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

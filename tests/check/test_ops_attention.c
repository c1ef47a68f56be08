/* test_ops_attention.c: the linear, softmax and attention (mha) op families
 * against plain C references in double.
 *
 * Every device result is compared with a double reference on odd shapes,
 * with inputs at a non-zero offset between canaries (testutil), outputs that
 * must be overwritten prefilled with NaN, and parameter gradients
 * accumulated onto non-zero values. Each reference backward is checked once
 * against central finite differences of its own forward. The GEMM back end
 * comes from CAE_TEST_GEMM (host or clblast); run the suite under both.
 * CAE_TEST_SMALL=1 shrinks the long shapes (for oclgrind). The attention
 * cases run once per core (GEMMs, fused kernel).
 */
#include "testutil.h"
#include "runtime/gemm.h"
#include "ops/ops.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 2e-5      /* float device result vs double reference */
#define FD_H 1e-5     /* central-difference step, in double */
#define FD_TOL 1e-7   /* finite differences vs analytic reference gradient */

/* ---- host scratch memory, freed after every test ---- */

#define MAX_SCRATCH 512
static void *scratch[MAX_SCRATCH];
static size_t n_scratch;

static void *scratch_alloc(size_t bytes)
{
    ck_assert_msg(n_scratch < MAX_SCRATCH, "test scratch table full");
    void *p = calloc(1, bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of host memory");
    scratch[n_scratch++] = p;
    return p;
}

static void scratch_free_all(void)
{
    for (size_t i = 0; i < n_scratch; i++)
        free(scratch[i]);
    n_scratch = 0;
}

static float *fvec(size_t n) { return scratch_alloc(n * sizeof(float)); }
static double *dvec(size_t n) { return scratch_alloc(n * sizeof(double)); }

static float *frand(size_t n, float lo, float hi, unsigned seed)
{
    float *x = fvec(n);
    tu_random(x, n, lo, hi, seed);
    return x;
}

static double *to_double(const float *x, size_t n)
{
    double *d = dvec(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* a + b elementwise, as double (initial value + reference gradient) */
static double *plus(const float *a, const double *b, size_t n)
{
    double *d = dvec(n);
    for (size_t i = 0; i < n; i++)
        d[i] = (double)a[i] + b[i];
    return d;
}

static int small_mode(void)
{
    const char *s = getenv("CAE_TEST_SMALL");
    return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

/* Download b (canaries checked) and compare it with want. */
static void expect(const char *what, const tu_dbuf *b, const double *want,
                   double tol)
{
    float *got = fvec(b->n);
    tu_download(got, b);
    tu_assert_close(what, got, want, b->n, tol);
}

/* Same, with both sides multiplied by s first (tiny values, long rows). */
static void expect_scaled(const char *what, const tu_dbuf *b,
                          const double *want, double s, double tol)
{
    float *got = fvec(b->n);
    double *w = dvec(b->n);
    tu_download(got, b);
    for (size_t i = 0; i < b->n; i++) {
        got[i] = (float)(got[i] * s);
        w[i] = want[i] * s;
    }
    tu_assert_close(what, got, w, b->n, tol);
}

/* ---- central finite differences of a double loss ---- */

typedef double (*loss_fn)(void *state);

/* Perturb each of param[0..n) by +-FD_H and compare the slope of f with
 * analytic[i]. */
static void fd_check(const char *what, double *param, size_t n,
                     const double *analytic, loss_fn f, void *state)
{
    double worst = 0.0, scale = 1.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double keep = param[i];
        param[i] = keep + FD_H;
        const double lp = f(state);
        param[i] = keep - FD_H;
        const double lm = f(state);
        param[i] = keep;
        const double fd = (lp - lm) / (2.0 * FD_H);
        const double e = fabs(fd - analytic[i]);
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
        if (fabs(analytic[i]) > scale)
            scale = fabs(analytic[i]);
    }
    ck_assert_msg(worst <= FD_TOL * scale,
                  "%s: finite differences off by %.3g at %zu (analytic %.9g)",
                  what, worst, at, n ? analytic[at] : 0.0);
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ======================= linear ======================= */

/* y[T,O] = x[T,I] W[O,I]^T + b (b may be NULL) */
static void ref_linear_forward(double *y, const double *x, const double *w,
                               const double *b, size_t T, size_t I, size_t O)
{
    for (size_t t = 0; t < T; t++)
        for (size_t o = 0; o < O; o++)
            y[t * O + o] = dot(x + t * I, w + o * I, I) + (b ? b[o] : 0.0);
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
    float *x = frand(LT * LI, -1, 1, 1), *w = frand(LO * LI, -.5f, .5f, 2);
    float *b = frand(LO, -1, 1, 3);
    double *want = dvec(LT * LO), *want_nb = dvec(LT * LO);
    ref_linear_forward(want, to_double(x, LT * LI), to_double(w, LO * LI),
                       to_double(b, LO), LT, LI, LO);
    ref_linear_forward(want_nb, to_double(x, LT * LI), to_double(w, LO * LI),
                       NULL, LT, LI, LO);

    cae_ctx *ctx = tu_ctx();
    tu_dbuf dx = tu_upload(x, LT * LI), dw = tu_upload(w, LO * LI);
    tu_dbuf db = tu_upload(b, LO);
    tu_dbuf y = tu_filled(LT * LO, NAN), y2 = tu_filled(LT * LO, NAN);
    ck_assert_int_eq(cae_linear_forward(ctx, y.buf, dx.buf, dw.buf, db.buf,
                                        LT, LI, LO), 0);
    ck_assert_int_eq(cae_linear_forward(ctx, y2.buf, dx.buf, dw.buf,
                                        cae_buf_null(), LT, LI, LO), 0);
    expect("linear y", &y, want, TOL);
    expect("linear y (no bias)", &y2, want_nb, TOL);
    tu_free(&dx); tu_free(&dw); tu_free(&db); tu_free(&y); tu_free(&y2);
}
END_TEST

START_TEST(test_linear_backward)
{
    const size_t nx = LT * LI, nw = LO * LI, ny = LT * LO;
    float *x = frand(nx, -1, 1, 11), *w = frand(nw, -.5f, .5f, 12);
    float *dy = frand(ny, -1, 1, 13);
    float *dx0 = frand(nx, -2, 2, 14), *dw0 = frand(nw, -2, 2, 15);
    float *db0 = frand(LO, -2, 2, 16);
    double *gx = dvec(nx), *gw = dvec(nw), *gb = dvec(LO);
    ref_linear_backward(gx, gw, gb, to_double(dy, ny), to_double(x, nx),
                        to_double(w, nw), LT, LI, LO);

    cae_ctx *ctx = tu_ctx();
    tu_dbuf d_x = tu_upload(x, nx), d_w = tu_upload(w, nw);
    tu_dbuf d_dy = tu_upload(dy, ny);
    for (int acc = 0; acc <= 1; acc++) {
        tu_dbuf d_dx = acc ? tu_upload(dx0, nx) : tu_filled(nx, NAN);
        tu_dbuf d_dw = tu_upload(dw0, nw), d_db = tu_upload(db0, LO);
        ck_assert_int_eq(cae_linear_backward(ctx, d_dx.buf, d_dw.buf, d_db.buf,
                                             d_dy.buf, d_x.buf, d_w.buf, LT,
                                             LI, LO, acc), 0);
        expect(acc ? "linear dx (accumulate)" : "linear dx", &d_dx,
               acc ? plus(dx0, gx, nx) : gx, TOL);
        expect("linear dw", &d_dw, plus(dw0, gw, nw), TOL);
        expect("linear db", &d_db, plus(db0, gb, LO), TOL);
        tu_free(&d_dx); tu_free(&d_dw); tu_free(&d_db);
    }
    /* dx and db absent: only dw is written */
    tu_dbuf d_dw = tu_upload(dw0, nw);
    ck_assert_int_eq(cae_linear_backward(ctx, cae_buf_null(), d_dw.buf,
                                         cae_buf_null(), d_dy.buf, d_x.buf,
                                         d_w.buf, LT, LI, LO, 0), 0);
    expect("linear dw (no dx, no db)", &d_dw, plus(dw0, gw, nw), TOL);
    tu_free(&d_dw); tu_free(&d_x); tu_free(&d_w); tu_free(&d_dy);
}
END_TEST

START_TEST(test_colsum_bias_add)
{
    const size_t T = small_mode() ? 201 : 1001, C = 19;
    float *in = frand(T * C, -1, 1, 21), *out0 = frand(C, -3, 3, 22);
    double *want = dvec(C);
    for (size_t c = 0; c < C; c++) {
        want[c] = out0[c];
        for (size_t t = 0; t < T; t++)
            want[c] += in[t * C + c];
    }
    float *b = frand(C, -1, 1, 23);
    double *want_y = dvec(T * C);
    for (size_t i = 0; i < T * C; i++)
        want_y[i] = (double)in[i] + b[i % C];

    cae_ctx *ctx = tu_ctx();
    tu_dbuf d_in = tu_upload(in, T * C), d_out = tu_upload(out0, C);
    tu_dbuf d_b = tu_upload(b, C);
    ck_assert_int_eq(cae_colsum_add(ctx, d_out.buf, d_in.buf, T, C), 0);
    expect("colsum_add", &d_out, want, TOL);
    ck_assert_int_eq(cae_bias_add(ctx, d_in.buf, d_b.buf, T, C), 0);
    expect("bias_add", &d_in, want_y, TOL);
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
    return dot(s->g, s->y, s->T * s->O);
}

START_TEST(test_linear_fd)
{
    linear_fd s = {NULL, NULL, NULL, NULL, NULL, 5, 4, 3};
    const size_t nx = s.T * s.I, nw = s.O * s.I, ny = s.T * s.O;
    s.x = to_double(frand(nx, -1, 1, 31), nx);
    s.w = to_double(frand(nw, -1, 1, 32), nw);
    s.b = to_double(frand(s.O, -1, 1, 33), s.O);
    s.g = to_double(frand(ny, -1, 1, 34), ny);
    s.y = dvec(ny);
    double *gx = dvec(nx), *gw = dvec(nw), *gb = dvec(s.O);
    ref_linear_backward(gx, gw, gb, s.g, s.x, s.w, s.T, s.I, s.O);
    fd_check("linear ref dx", s.x, nx, gx, linear_loss, &s);
    fd_check("linear ref dw", s.w, nw, gw, linear_loss, &s);
    fd_check("linear ref db", s.b, s.O, gb, linear_loss, &s);
}
END_TEST

/* ======================= softmax ======================= */

static void ref_softmax(double *y, const double *x, size_t R, size_t K)
{
    for (size_t r = 0; r < R; r++) {
        const double *xr = x + r * K;
        double *yr = y + r * K, m = -INFINITY, sum = 0.0;
        for (size_t k = 0; k < K; k++)
            m = fmax(m, xr[k]);
        for (size_t k = 0; k < K; k++)
            sum += (yr[k] = exp(xr[k] - m));
        for (size_t k = 0; k < K; k++)
            yr[k] /= sum;
    }
}

static void ref_softmax_backward(double *dx, const double *dy, const double *y,
                                 size_t R, size_t K)
{
    for (size_t r = 0; r < R; r++) {
        const double s = dot(dy + r * K, y + r * K, K);
        for (size_t k = 0; k < K; k++)
            dx[r * K + k] = y[r * K + k] * (dy[r * K + k] - s);
    }
}

/* Softmax forward and backward of x [R,K] (random in [-lo_hi, lo_hi]),
 * out of place and in place; results scaled by K before comparing so that
 * long rows of tiny probabilities are still checked tightly. */
static void softmax_case(size_t R, size_t K, float spread, unsigned seed)
{
    const size_t n = R * K;
    float *x = frand(n, -spread, spread, seed);
    /* rows far from 0: a softmax without the max shift overflows */
    if (R > 2) {
        for (size_t k = 0; k < K; k++) {
            x[1 * K + k] += 1000.0f;
            x[2 * K + k] -= 1000.0f;
        }
    }
    float *dy = frand(n, -1, 1, seed + 1);
    double *y = dvec(n), *dx = dvec(n);
    ref_softmax(y, to_double(x, n), R, K);
    float *yf = fvec(n);
    for (size_t i = 0; i < n; i++)
        yf[i] = (float)y[i];
    /* the backward reference uses the float y the device sees */
    ref_softmax_backward(dx, to_double(dy, n), to_double(yf, n), R, K);

    cae_ctx *ctx = tu_ctx();
    tu_dbuf d_x = tu_upload(x, n), d_y = tu_filled(n, NAN);
    ck_assert_int_eq(cae_softmax_forward(ctx, d_y.buf, d_x.buf, R, K), 0);
    expect_scaled("softmax y", &d_y, y, (double)K, TOL);
    expect("softmax x untouched", &d_x, to_double(x, n), 0.0);
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
    softmax_case(3, small_mode() ? 517 : 8193, 5.0f, 45);
}
END_TEST

typedef struct {
    double *x, *g, *y;
    size_t R, K;
} softmax_fd;

static double softmax_loss(void *state)
{
    softmax_fd *s = state;
    ref_softmax(s->y, s->x, s->R, s->K);
    return dot(s->g, s->y, s->R * s->K);
}

START_TEST(test_softmax_fd)
{
    softmax_fd s = {NULL, NULL, NULL, 4, 7};
    const size_t n = s.R * s.K;
    s.x = to_double(frand(n, -2, 2, 51), n);
    s.g = to_double(frand(n, -1, 1, 52), n);
    s.y = dvec(n);
    double *gx = dvec(n);
    softmax_loss(&s);
    ref_softmax_backward(gx, s.g, s.y, s.R, s.K);
    fd_check("softmax ref dx", s.x, n, gx, softmax_loss, &s);
}
END_TEST

/* ======================= attention core ======================= */

/* p = softmax(q k^T) per problem, o = p v; q [BH,Nq,dh], k, v [BH,Nk,dh] */
static void ref_attn_forward(double *o, double *p, const double *q,
                             const double *k, const double *v, size_t BH,
                             size_t Nq, size_t Nk, size_t dh)
{
    for (size_t bh = 0; bh < BH; bh++) {
        const double *qb = q + bh * Nq * dh, *kb = k + bh * Nk * dh;
        const double *vb = v + bh * Nk * dh;
        double *pb = p + bh * Nq * Nk, *ob = o + bh * Nq * dh;
        for (size_t i = 0; i < Nq; i++)
            for (size_t j = 0; j < Nk; j++)
                pb[i * Nk + j] = dot(qb + i * dh, kb + j * dh, dh);
        ref_softmax(pb, pb, Nq, Nk);
        for (size_t i = 0; i < Nq; i++)
            for (size_t d = 0; d < dh; d++) {
                double s = 0.0;
                for (size_t j = 0; j < Nk; j++)
                    s += pb[i * Nk + j] * vb[j * dh + d];
                ob[i * dh + d] = s;
            }
    }
}

static void ref_attn_backward(double *dq, double *dk, double *dv,
                              const double *dout, const double *p,
                              const double *q, const double *k,
                              const double *v, size_t BH, size_t Nq,
                              size_t Nk, size_t dh)
{
    double *ds = malloc(Nq * Nk * sizeof *ds);
    ck_assert(ds != NULL);
    for (size_t bh = 0; bh < BH; bh++) {
        const double *pb = p + bh * Nq * Nk, *gb = dout + bh * Nq * dh;
        const double *qb = q + bh * Nq * dh, *kb = k + bh * Nk * dh;
        const double *vb = v + bh * Nk * dh;
        double *dqb = dq + bh * Nq * dh, *dkb = dk + bh * Nk * dh;
        double *dvb = dv + bh * Nk * dh;
        for (size_t j = 0; j < Nk; j++)
            for (size_t d = 0; d < dh; d++) {
                double s = 0.0;
                for (size_t i = 0; i < Nq; i++)
                    s += pb[i * Nk + j] * gb[i * dh + d];
                dvb[j * dh + d] = s;
            }
        for (size_t i = 0; i < Nq; i++)
            for (size_t j = 0; j < Nk; j++)
                ds[i * Nk + j] = dot(gb + i * dh, vb + j * dh, dh);
        ref_softmax_backward(ds, ds, pb, Nq, Nk);
        for (size_t i = 0; i < Nq; i++)
            for (size_t d = 0; d < dh; d++) {
                double s = 0.0;
                for (size_t j = 0; j < Nk; j++)
                    s += ds[i * Nk + j] * kb[j * dh + d];
                dqb[i * dh + d] = s;
            }
        for (size_t j = 0; j < Nk; j++)
            for (size_t d = 0; d < dh; d++) {
                double s = 0.0;
                for (size_t i = 0; i < Nq; i++)
                    s += ds[i * Nk + j] * qb[i * dh + d];
                dkb[j * dh + d] = s;
            }
    }
    free(ds);
}

typedef struct {
    double *q, *k, *v, *g, *o, *p;
    size_t BH, Nq, Nk, dh;
} attn_fd;

static double attn_loss(void *state)
{
    attn_fd *s = state;
    ref_attn_forward(s->o, s->p, s->q, s->k, s->v, s->BH, s->Nq, s->Nk, s->dh);
    return dot(s->g, s->o, s->BH * s->Nq * s->dh);
}

START_TEST(test_attention_core_fd)
{
    attn_fd s = {NULL, NULL, NULL, NULL, NULL, NULL, 2, 3, 4, 3};
    const size_t nq = s.BH * s.Nq * s.dh, nk = s.BH * s.Nk * s.dh;
    s.q = to_double(frand(nq, -1.5f, 1.5f, 71), nq);
    s.k = to_double(frand(nk, -1.5f, 1.5f, 72), nk);
    s.v = to_double(frand(nk, -1, 1, 73), nk);
    s.g = to_double(frand(nq, -1, 1, 74), nq);
    s.o = dvec(nq);
    s.p = dvec(s.BH * s.Nq * s.Nk);
    double *dq = dvec(nq), *dk = dvec(nk), *dv = dvec(nk);
    attn_loss(&s);
    ref_attn_backward(dq, dk, dv, s.g, s.p, s.q, s.k, s.v, s.BH, s.Nq, s.Nk,
                      s.dh);
    fd_check("attention ref dq", s.q, nq, dq, attn_loss, &s);
    fd_check("attention ref dk", s.k, nk, dk, attn_loss, &s);
    fd_check("attention ref dv", s.v, nk, dv, attn_loss, &s);
}
END_TEST

/* ======================= multi-head attention ======================= */

/* One attention layer between the linears: q, k, v are column blocks of
 * token matrices (xq [B*Nq, sq] at column cq, and so on), q gets q_bias and
 * the scale, v gets v_bias, k nothing; the output is [B*Nq, H*dh].
 * share: 0 three matrices, 1 k and v in one matrix (xv == xk), 2 one fused
 * qkv matrix (xq == xk == xv). */
typedef struct {
    size_t B, Nq, Nk, H, dh;
    double scale;
    int share;
    double *xq, *xk, *xv, *qb, *vb;
    size_t sq, cq, sk, ck, sv, cv;
    size_t nxq, nxk, nxv; /* elements of each matrix */
} mha;

static void ref_split(double *out, const double *in, size_t stride,
                      size_t col, const double *bias, double scale, size_t B,
                      size_t N, size_t H, size_t dh)
{
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t n = 0; n < N; n++)
                for (size_t d = 0; d < dh; d++)
                    out[((b * H + h) * N + n) * dh + d] =
                        scale * (in[(b * N + n) * stride + col + h * dh + d] +
                                 (bias ? bias[h * dh + d] : 0.0));
}

/* in[token layout] += scale * g[head layout]; bias gradient likewise */
static void ref_split_backward(double *din, double *dbias, const double *g,
                               size_t stride, size_t col, double scale,
                               size_t B, size_t N, size_t H, size_t dh)
{
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t n = 0; n < N; n++)
                for (size_t d = 0; d < dh; d++) {
                    const double x = scale * g[((b * H + h) * N + n) * dh + d];
                    din[(b * N + n) * stride + col + h * dh + d] += x;
                    if (dbias)
                        dbias[h * dh + d] += x;
                }
}

typedef struct {
    double *q, *k, *v, *o, *p;
} mha_heads;

static mha_heads ref_mha_heads(const mha *m)
{
    const size_t BH = m->B * m->H;
    mha_heads t;
    t.q = dvec(BH * m->Nq * m->dh);
    t.k = dvec(BH * m->Nk * m->dh);
    t.v = dvec(BH * m->Nk * m->dh);
    t.o = dvec(BH * m->Nq * m->dh);
    t.p = dvec(BH * m->Nq * m->Nk);
    return t;
}

/* y [B*Nq, H*dh]; t receives the per-head tensors */
static void ref_mha_forward(double *y, const mha *m, mha_heads *t)
{
    const size_t B = m->B, H = m->H, dh = m->dh, C = H * dh;
    ref_split(t->q, m->xq, m->sq, m->cq, m->qb, m->scale, B, m->Nq, H, dh);
    ref_split(t->k, m->xk, m->sk, m->ck, NULL, 1.0, B, m->Nk, H, dh);
    ref_split(t->v, m->xv, m->sv, m->cv, m->vb, 1.0, B, m->Nk, H, dh);
    ref_attn_forward(t->o, t->p, t->q, t->k, t->v, B * H, m->Nq, m->Nk, dh);
    /* merge is split's inverse layout move */
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t n = 0; n < m->Nq; n++)
                for (size_t d = 0; d < dh; d++)
                    y[(b * m->Nq + n) * C + h * dh + d] =
                        t->o[((b * H + h) * m->Nq + n) * dh + d];
}

/* The same layer written directly on the token matrices, with no head
 * layout: y[b*Nq+i, h*dh+d] = sum_j softmax_j(s) (xv + v_bias), where
 * s_j = sum_e scale * (xq + q_bias) xk over head h's channels e. The device
 * output and the finite differences are checked against this one. */
static void ref_mha_plain(double *y, const mha *m)
{
    const size_t H = m->H, dh = m->dh, C = H * dh;
    double *s = malloc(m->Nk * sizeof *s);
    ck_assert(s != NULL);
    for (size_t b = 0; b < m->B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < m->Nq; i++) {
                const double *xq = m->xq + (b * m->Nq + i) * m->sq + m->cq + h * dh;
                double mx = -INFINITY, sum = 0.0;
                for (size_t j = 0; j < m->Nk; j++) {
                    const double *xk = m->xk + (b * m->Nk + j) * m->sk + m->ck + h * dh;
                    s[j] = 0.0;
                    for (size_t e = 0; e < dh; e++)
                        s[j] += m->scale * (xq[e] + m->qb[h * dh + e]) * xk[e];
                    mx = fmax(mx, s[j]);
                }
                for (size_t j = 0; j < m->Nk; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (size_t d = 0; d < dh; d++) {
                    double acc = 0.0;
                    for (size_t j = 0; j < m->Nk; j++) {
                        const double *xv = m->xv + (b * m->Nk + j) * m->sv + m->cv + h * dh;
                        acc += s[j] / sum * (xv[d] + m->vb[h * dh + d]);
                    }
                    y[(b * m->Nq + i) * C + h * dh + d] = acc;
                }
            }
    free(s);
}

/* gradients (+=) of sum(dy * y) into gxq, gxk, gxv (same layouts as the
 * inputs; they may be one array for fused qkv), gqb, gvb */
static void ref_mha_backward(double *gxq, double *gxk, double *gxv,
                             double *gqb, double *gvb, const double *dy,
                             const mha *m)
{
    const size_t B = m->B, H = m->H, dh = m->dh, C = H * dh, BH = B * H;
    mha_heads t = ref_mha_heads(m);
    double *y = dvec(B * m->Nq * C), *dout = dvec(BH * m->Nq * dh);
    double *dq = dvec(BH * m->Nq * dh), *dk = dvec(BH * m->Nk * dh);
    double *dv = dvec(BH * m->Nk * dh);
    ref_mha_forward(y, m, &t);
    ref_split(dout, dy, C, 0, NULL, 1.0, B, m->Nq, H, dh);
    ref_attn_backward(dq, dk, dv, dout, t.p, t.q, t.k, t.v, BH, m->Nq, m->Nk,
                      dh);
    ref_split_backward(gxq, gqb, dq, m->sq, m->cq, m->scale, B, m->Nq, H, dh);
    ref_split_backward(gxk, NULL, dk, m->sk, m->ck, 1.0, B, m->Nk, H, dh);
    ref_split_backward(gxv, gvb, dv, m->sv, m->cv, 1.0, B, m->Nk, H, dh);
}

/* The same layer on the device as the model runs it (src/blocks.c): the
 * biases added in place to work copies of the inputs (q and v blocks), the
 * token-layout core cae_mha_forward, then cae_mha_backward into zeroed
 * gradient matrices (it writes only the blocks), the bias gradients as
 * column sums of the q and v blocks, and the result copied or added to the
 * caller's gradients (the accumulate flag). The core is the context's
 * (test_mha_* run both). */
typedef struct {
    cae_buf xq, xk, xv, qb, vb;       /* inputs */
    cae_buf gxq, gxk, gxv, gqb, gvb;  /* gradients */
} mha_dev;

static void dev_mha(const mha *m, const mha_dev *d, const tu_dbuf *y,
                    const tu_dbuf *dy, int accumulate)
{
    cae_ctx *ctx = tu_ctx();
    const size_t B = m->B, H = m->H, dh = m->dh, C = H * dh;
    const int sk = m->share == 2, sv = m->share >= 1;
    cae_mha_dims md = {B, H, m->Nq, m->Nk, dh, (float)m->scale};
    const size_t nsaved = cae_mha_saved_elems(ctx, &md);
    tu_dbuf wq = tu_filled(m->nxq, NAN), wk = wq, wv = wq;
    tu_dbuf tq = tu_filled(m->nxq, 0.0f), tk = tq, tv = tq;
    tu_dbuf saved = tu_filled(nsaved, NAN), scratch = tu_filled(cae_mha_scratch_elems(ctx, &md), NAN);

    if (!sk) {
        wk = tu_filled(m->nxk, NAN);
        tk = tu_filled(m->nxk, 0.0f);
    }
    if (sv) { /* v shares k's matrix */
        wv = wk;
        tv = tk;
    } else {
        wv = tu_filled(m->nxv, NAN);
        tv = tu_filled(m->nxv, 0.0f);
    }
    ck_assert_int_eq(cae_copy(ctx, wq.buf, d->xq, m->nxq), 0);
    if (!sk)
        ck_assert_int_eq(cae_copy(ctx, wk.buf, d->xk, m->nxk), 0);
    if (!sv)
        ck_assert_int_eq(cae_copy(ctx, wv.buf, d->xv, m->nxv), 0);
    ck_assert_int_eq(cae_bias_add_ld(ctx, cae_buf_at(wq.buf, m->cq), m->sq, d->qb,
                                     B * m->Nq, C), 0);
    ck_assert_int_eq(cae_bias_add_ld(ctx, cae_buf_at(wv.buf, m->cv), m->sv, d->vb,
                                     B * m->Nk, C), 0);
    const cae_tok q = cae_tok_of(cae_buf_at(wq.buf, m->cq), m->sq);
    const cae_tok k = cae_tok_of(cae_buf_at(wk.buf, m->ck), m->sk);
    const cae_tok v = cae_tok_of(cae_buf_at(wv.buf, m->cv), m->sv);
    ck_assert_int_eq(cae_mha_forward(ctx, &md, cae_tok_of(y->buf, C), saved.buf, q, k, v), 0);

    ck_assert_int_eq(cae_mha_backward(ctx, &md, cae_tok_of(cae_buf_at(tq.buf, m->cq), m->sq),
                                      cae_tok_of(cae_buf_at(tk.buf, m->ck), m->sk),
                                      cae_tok_of(cae_buf_at(tv.buf, m->cv), m->sv), scratch.buf,
                                      cae_tok_of(dy->buf, C), cae_tok_of(y->buf, C), saved.buf,
                                      q, k, v), 0);
    ck_assert_int_eq(cae_colsum_add_ld(ctx, d->gqb, cae_buf_at(tq.buf, m->cq), m->sq,
                                       B * m->Nq, C), 0);
    ck_assert_int_eq(cae_colsum_add_ld(ctx, d->gvb, cae_buf_at(tv.buf, m->cv), m->sv,
                                       B * m->Nk, C), 0);
    if (accumulate) {
        ck_assert_int_eq(cae_add(ctx, d->gxq, d->gxq, tq.buf, m->nxq), 0);
        if (!sk)
            ck_assert_int_eq(cae_add(ctx, d->gxk, d->gxk, tk.buf, m->nxk), 0);
        if (!sv)
            ck_assert_int_eq(cae_add(ctx, d->gxv, d->gxv, tv.buf, m->nxv), 0);
    } else {
        ck_assert_int_eq(cae_copy(ctx, d->gxq, tq.buf, m->nxq), 0);
        if (!sk)
            ck_assert_int_eq(cae_copy(ctx, d->gxk, tk.buf, m->nxk), 0);
        if (!sv)
            ck_assert_int_eq(cae_copy(ctx, d->gxv, tv.buf, m->nxv), 0);
    }
    /* the intermediates' canaries */
    tu_dbuf *all[] = {&wq, &wk, &wv, &tq, &tk, &tv, &saved, &scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if ((i == 1 || i == 4) && sk)
            continue;
        if ((i == 2 || i == 5) && sv)
            continue;
        float *tmp = fvec(all[i]->n);
        tu_download(tmp, all[i]);
        tu_free(all[i]);
    }
}

static float *to_float(const double *x, size_t n)
{
    float *f = fvec(n);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    return f;
}

/* Random inputs for m, rounded to float so device and reference agree; the
 * matrices alias as m->share says. */
static void mha_inputs(mha *m, unsigned seed)
{
    const size_t C = m->H * m->dh;
    m->xq = to_double(frand(m->nxq, -1, 1, seed), m->nxq);
    m->xk = m->share == 2 ? m->xq
                          : to_double(frand(m->nxk, -1, 1, seed + 1), m->nxk);
    m->xv = m->share >= 1 ? m->xk
                          : to_double(frand(m->nxv, -1, 1, seed + 2), m->nxv);
    m->qb = to_double(frand(C, -1, 1, seed + 3), C);
    m->vb = to_double(frand(C, -1, 1, seed + 4), C);
}

/* Gradient arrays aliased like the inputs, starting at init (or zero). */
static void mha_grads(const mha *m, const float *i0, const float *i1,
                      const float *i2, double **gq, double **gk, double **gv)
{
    *gq = i0 ? to_double(i0, m->nxq) : dvec(m->nxq);
    *gk = m->share == 2 ? *gq : i1 ? to_double(i1, m->nxk) : dvec(m->nxk);
    *gv = m->share >= 1 ? *gk : i2 ? to_double(i2, m->nxv) : dvec(m->nxv);
}

/* Device gradient buffer: the initial values when accumulating, else NaN so
 * that every element must be written. */
static tu_dbuf grad_buf(const float *init, size_t n, int accumulate)
{
    return accumulate ? tu_upload(init, n) : tu_filled(n, NAN);
}

/* Run the reference and the device layer and compare the output and every
 * gradient. */
static void mha_case(mha *m, int accumulate, unsigned seed)
{
    const size_t C = m->H * m->dh, ny = m->B * m->Nq * C;
    const int sk = m->share == 2, sv = m->share >= 1; /* k, v reuse a buffer */
    mha_inputs(m, seed);
    float *dy = frand(ny, -1, 1, seed + 5);
    float *gq0 = frand(m->nxq, -2, 2, seed + 6);
    float *gk0 = frand(m->nxk, -2, 2, seed + 7);
    float *gv0 = frand(m->nxv, -2, 2, seed + 8);
    float *gqb0 = frand(C, -2, 2, seed + 9), *gvb0 = frand(C, -2, 2, seed + 10);

    mha_heads t = ref_mha_heads(m);
    double *y = dvec(ny), *y_heads = dvec(ny), *gq, *gk, *gv;
    ref_mha_plain(y, m);
    ref_mha_forward(y_heads, m, &t);
    for (size_t i = 0; i < ny; i++)
        ck_assert_msg(fabs(y[i] - y_heads[i]) <= 1e-12,
                      "the two references disagree at %zu", i);
    if (accumulate)
        mha_grads(m, gq0, gk0, gv0, &gq, &gk, &gv);
    else
        mha_grads(m, NULL, NULL, NULL, &gq, &gk, &gv);
    double *gqb = to_double(gqb0, C), *gvb = to_double(gvb0, C);
    ref_mha_backward(gq, gk, gv, gqb, gvb, to_double(dy, ny), m);

    tu_dbuf xq = tu_upload(to_float(m->xq, m->nxq), m->nxq);
    tu_dbuf xk = sk ? xq : tu_upload(to_float(m->xk, m->nxk), m->nxk);
    tu_dbuf xv = sv ? xk : tu_upload(to_float(m->xv, m->nxv), m->nxv);
    tu_dbuf qb = tu_upload(to_float(m->qb, C), C);
    tu_dbuf vb = tu_upload(to_float(m->vb, C), C);
    tu_dbuf gxq = grad_buf(gq0, m->nxq, accumulate);
    tu_dbuf gxk = sk ? gxq : grad_buf(gk0, m->nxk, accumulate);
    tu_dbuf gxv = sv ? gxk : grad_buf(gv0, m->nxv, accumulate);
    tu_dbuf gqb_d = tu_upload(gqb0, C), gvb_d = tu_upload(gvb0, C);
    tu_dbuf d_y = tu_filled(ny, NAN), d_dy = tu_upload(dy, ny);
    mha_dev d = {xq.buf, xk.buf, xv.buf, qb.buf, vb.buf,
                 gxq.buf, gxk.buf, gxv.buf, gqb_d.buf, gvb_d.buf};
    dev_mha(m, &d, &d_y, &d_dy, accumulate);

    expect("mha y", &d_y, y, TOL);
    expect("mha dxq", &gxq, gq, TOL);
    if (!sk) {
        expect("mha dxk", &gxk, gk, TOL);
        tu_free(&xk);
        tu_free(&gxk);
    }
    if (!sv) {
        expect("mha dxv", &gxv, gv, TOL);
        tu_free(&xv);
        tu_free(&gxv);
    }
    expect("mha dq_bias", &gqb_d, gqb, TOL);
    expect("mha dv_bias", &gvb_d, gvb, TOL);
    tu_free(&xq); tu_free(&qb); tu_free(&vb); tu_free(&gxq);
    tu_free(&gqb_d); tu_free(&gvb_d); tu_free(&d_y); tu_free(&d_dy);
}

/* self-attention on a fused qkv output [B*N, 3C]: q | k | v blocks */
static mha mha_self(size_t B, size_t N, size_t H, size_t dh)
{
    const size_t C = H * dh, n = B * N * 3 * C;
    mha m = {B, N, N, H, dh, 1.0 / sqrt((double)dh), 2,
             NULL, NULL, NULL, NULL, NULL,
             3 * C, 0, 3 * C, C, 3 * C, 2 * C, n, n, n};
    return m;
}

/* cross-attention (the regressor): q from [B*Nq, C]; k and v from one
 * [B*Nk, 2C + gap] matrix, v starting at column C + gap; with a gap the
 * columns in between belong to neither and must keep their gradient */
static mha mha_cross(size_t B, size_t Nq, size_t Nk, size_t H, size_t dh,
                     size_t gap)
{
    const size_t C = H * dh, s = 2 * C + gap;
    mha m = {B, Nq, Nk, H, dh, 1.0 / sqrt((double)dh), 1,
             NULL, NULL, NULL, NULL, NULL,
             C, 0, s, 0, s, C + gap, B * Nq * C, B * Nk * s, B * Nk * s};
    return m;
}

/* three separate matrices, each wider than its block */
static mha mha_separate(size_t B, size_t Nq, size_t Nk, size_t H, size_t dh)
{
    const size_t C = H * dh;
    mha m = {B, Nq, Nk, H, dh, 1.0 / sqrt((double)dh), 0,
             NULL, NULL, NULL, NULL, NULL,
             C + 1, 1, C + 2, 2, C + 3, 0,
             B * Nq * (C + 1), B * Nk * (C + 2), B * Nk * (C + 3)};
    return m;
}

/* _i: the attention core (0 GEMMs, 1 fused) */
static void use_core(int fused)
{
    cae_mha_set_fused(tu_ctx(), fused);
}

START_TEST(test_mha_self)
{
    use_core(_i);
    mha m = mha_self(2, 9, 3, 5);
    mha_case(&m, 0, 91);
    m = mha_self(3, 5, 2, 7);
    mha_case(&m, 1, 96);
}
END_TEST

START_TEST(test_mha_cross)
{
    use_core(_i);
    mha m = mha_cross(2, 7, 11, 3, 5, 0);
    mha_case(&m, 0, 101);
    m = mha_cross(2, 7, 11, 3, 5, 3);
    mha_case(&m, 1, 111);
    m = mha_separate(3, 5, 4, 2, 3);
    mha_case(&m, 1, 121);
    m = mha_cross(2, 13, 4, 2, 7, 0); /* more queries than keys */
    mha_case(&m, 0, 125);
    m = mha_cross(3, 1, 6, 2, 4, 0);  /* one query (the attentive probe) */
    mha_case(&m, 0, 127);
    m = mha_cross(2, 1, 1, 1, 3, 0);  /* a single key: p == 1 */
    mha_case(&m, 1, 129);
}
END_TEST

typedef struct {
    mha *m;
    double *y, *g;
} mha_fd;

static double mha_loss(void *state)
{
    mha_fd *s = state;
    ref_mha_plain(s->y, s->m);
    return dot(s->g, s->y, s->m->B * s->m->Nq * s->m->H * s->m->dh);
}

static void mha_fd_case(mha *m, unsigned seed)
{
    const size_t C = m->H * m->dh, ny = m->B * m->Nq * C;
    mha_inputs(m, seed);
    mha_fd s = {m, dvec(ny), to_double(frand(ny, -1, 1, seed + 5), ny)};
    double *gq, *gk, *gv, *gqb = dvec(C), *gvb = dvec(C);
    mha_grads(m, NULL, NULL, NULL, &gq, &gk, &gv);
    ref_mha_backward(gq, gk, gv, gqb, gvb, s.g, m);
    fd_check("mha ref dxq", m->xq, m->nxq, gq, mha_loss, &s);
    if (m->share < 2)
        fd_check("mha ref dxk", m->xk, m->nxk, gk, mha_loss, &s);
    if (m->share < 1)
        fd_check("mha ref dxv", m->xv, m->nxv, gv, mha_loss, &s);
    fd_check("mha ref dq_bias", m->qb, C, gqb, mha_loss, &s);
    fd_check("mha ref dv_bias", m->vb, C, gvb, mha_loss, &s);
}

START_TEST(test_mha_fd)
{
    mha a = mha_self(2, 3, 2, 3);
    mha_fd_case(&a, 131);
    mha b = mha_cross(2, 3, 4, 2, 3, 1);
    mha_fd_case(&b, 141);
    mha c = mha_separate(2, 4, 3, 2, 3);
    mha_fd_case(&c, 151);
}
END_TEST

/* ======================= the suite ======================= */

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, scratch_free_all);
    return tc;
}

static Suite *ops_attention_suite(void)
{
    Suite *s = suite_create("ops_attention");
    TCase *tc = tcase("linear");
    tcase_add_test(tc, test_linear_forward);
    tcase_add_test(tc, test_linear_backward);
    tcase_add_test(tc, test_colsum_bias_add);
    tcase_add_test(tc, test_linear_fd);
    suite_add_tcase(s, tc);
    tc = tcase("softmax");
    tcase_add_test(tc, test_softmax);
    tcase_add_test(tc, test_softmax_long_rows);
    tcase_add_test(tc, test_softmax_fd);
    suite_add_tcase(s, tc);
    tc = tcase("attention");
    tcase_add_test(tc, test_attention_core_fd);
    tcase_add_loop_test(tc, test_mha_self, 0, 2);
    tcase_add_loop_test(tc, test_mha_cross, 0, 2);
    tcase_add_test(tc, test_mha_fd);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_attention_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

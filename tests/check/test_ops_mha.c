/* test_ops_mha.c: multi-head attention (src/ops/mha.c): the attention core
 * and whole attention layers between the linears (self-attention on a fused
 * qkv matrix, cross-attention with k and v in one matrix, three separate
 * matrices) against plain C references in double, on both cores (GEMMs and
 * the fused kernel).
 *
 * Odd shapes, inputs at a non-zero offset between canaries, outputs that
 * must be overwritten prefilled with NaN, gradients accumulated onto
 * non-zero values. Each reference backward is checked once against central
 * finite differences of its own forward. The GEMM back end comes from
 * CAE_TEST_GEMM (host or clblast): tests/shell/gemm-clblast.sh runs the
 * suite again on CLBlast.
 */
#include "tests/common/testutil.h"
#include "tests/common/reference.h"

#include "ops/ops.h"
#include "runtime/gemm.h"

#include <math.h>
#include <stdlib.h>

#define TOL 2e-5    /* float device result vs double reference */
#define FD_TOL 1e-7 /* finite differences vs analytic reference gradient */

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
                pb[i * Nk + j] = tu_dot(qb + i * dh, kb + j * dh, dh);
        tu_ref_softmax(pb, pb, Nq, Nk);
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
                ds[i * Nk + j] = tu_dot(gb + i * dh, vb + j * dh, dh);
        tu_ref_softmax_backward(ds, ds, pb, Nq, Nk);
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
    return tu_dot(s->g, s->o, s->BH * s->Nq * s->dh);
}

START_TEST(test_attention_core_fd)
{
    attn_fd s = {NULL, NULL, NULL, NULL, NULL, NULL, 2, 3, 4, 3};
    const size_t nq = s.BH * s.Nq * s.dh, nk = s.BH * s.Nk * s.dh;
    s.q = tu_to_double(tu_frand(nq, -1.5f, 1.5f, 71), nq);
    s.k = tu_to_double(tu_frand(nk, -1.5f, 1.5f, 72), nk);
    s.v = tu_to_double(tu_frand(nk, -1, 1, 73), nk);
    s.g = tu_to_double(tu_frand(nq, -1, 1, 74), nq);
    s.o = tu_dvec(nq);
    s.p = tu_dvec(s.BH * s.Nq * s.Nk);
    double *dq = tu_dvec(nq), *dk = tu_dvec(nk), *dv = tu_dvec(nk);
    attn_loss(&s);
    ref_attn_backward(dq, dk, dv, s.g, s.p, s.q, s.k, s.v, s.BH, s.Nq, s.Nk,
                      s.dh);
    tu_fd_check("attention ref dq", dq, attn_loss, &s, s.q, nq, FD_TOL);
    tu_fd_check("attention ref dk", dk, attn_loss, &s, s.k, nk, FD_TOL);
    tu_fd_check("attention ref dv", dv, attn_loss, &s, s.v, nk, FD_TOL);
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
    t.q = tu_dvec(BH * m->Nq * m->dh);
    t.k = tu_dvec(BH * m->Nk * m->dh);
    t.v = tu_dvec(BH * m->Nk * m->dh);
    t.o = tu_dvec(BH * m->Nq * m->dh);
    t.p = tu_dvec(BH * m->Nq * m->Nk);
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
    double *y = tu_dvec(B * m->Nq * C), *dout = tu_dvec(BH * m->Nq * dh);
    double *dq = tu_dvec(BH * m->Nq * dh), *dk = tu_dvec(BH * m->Nk * dh);
    double *dv = tu_dvec(BH * m->Nk * dh);
    ref_mha_forward(y, m, &t);
    ref_split(dout, dy, C, 0, NULL, 1.0, B, m->Nq, H, dh);
    ref_attn_backward(dq, dk, dv, dout, t.p, t.q, t.k, t.v, BH, m->Nq, m->Nk,
                      dh);
    ref_split_backward(gxq, gqb, dq, m->sq, m->cq, m->scale, B, m->Nq, H, dh);
    ref_split_backward(gxk, NULL, dk, m->sk, m->ck, 1.0, B, m->Nk, H, dh);
    ref_split_backward(gxv, gvb, dv, m->sv, m->cv, 1.0, B, m->Nk, H, dh);
}

/* The same layer on the device as the model runs it (src/model/blocks.c): the
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
        float *tmp = tu_fvec(all[i]->n);
        tu_download(tmp, all[i]);
        tu_free(all[i]);
    }
}

/* Random inputs for m, rounded to float so device and reference agree; the
 * matrices alias as m->share says. */
static void mha_inputs(mha *m, unsigned seed)
{
    const size_t C = m->H * m->dh;
    m->xq = tu_to_double(tu_frand(m->nxq, -1, 1, seed), m->nxq);
    m->xk = m->share == 2 ? m->xq
                          : tu_to_double(tu_frand(m->nxk, -1, 1, seed + 1), m->nxk);
    m->xv = m->share >= 1 ? m->xk
                          : tu_to_double(tu_frand(m->nxv, -1, 1, seed + 2), m->nxv);
    m->qb = tu_to_double(tu_frand(C, -1, 1, seed + 3), C);
    m->vb = tu_to_double(tu_frand(C, -1, 1, seed + 4), C);
}

/* Gradient arrays aliased like the inputs, starting at init (or zero). */
static void mha_grads(const mha *m, const float *i0, const float *i1,
                      const float *i2, double **gq, double **gk, double **gv)
{
    *gq = i0 ? tu_to_double(i0, m->nxq) : tu_dvec(m->nxq);
    *gk = m->share == 2 ? *gq : i1 ? tu_to_double(i1, m->nxk) : tu_dvec(m->nxk);
    *gv = m->share >= 1 ? *gk : i2 ? tu_to_double(i2, m->nxv) : tu_dvec(m->nxv);
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
    float *dy = tu_frand(ny, -1, 1, seed + 5);
    float *gq0 = tu_frand(m->nxq, -2, 2, seed + 6);
    float *gk0 = tu_frand(m->nxk, -2, 2, seed + 7);
    float *gv0 = tu_frand(m->nxv, -2, 2, seed + 8);
    float *gqb0 = tu_frand(C, -2, 2, seed + 9), *gvb0 = tu_frand(C, -2, 2, seed + 10);

    mha_heads t = ref_mha_heads(m);
    double *y = tu_dvec(ny), *y_heads = tu_dvec(ny), *gq, *gk, *gv;
    ref_mha_plain(y, m);
    ref_mha_forward(y_heads, m, &t);
    for (size_t i = 0; i < ny; i++)
        ck_assert_msg(fabs(y[i] - y_heads[i]) <= 1e-12,
                      "the two references disagree at %zu", i);
    if (accumulate)
        mha_grads(m, gq0, gk0, gv0, &gq, &gk, &gv);
    else
        mha_grads(m, NULL, NULL, NULL, &gq, &gk, &gv);
    double *gqb = tu_to_double(gqb0, C), *gvb = tu_to_double(gvb0, C);
    ref_mha_backward(gq, gk, gv, gqb, gvb, tu_to_double(dy, ny), m);

    tu_dbuf xq = tu_upload(tu_to_float(m->xq, m->nxq), m->nxq);
    tu_dbuf xk = sk ? xq : tu_upload(tu_to_float(m->xk, m->nxk), m->nxk);
    tu_dbuf xv = sv ? xk : tu_upload(tu_to_float(m->xv, m->nxv), m->nxv);
    tu_dbuf qb = tu_upload(tu_to_float(m->qb, C), C);
    tu_dbuf vb = tu_upload(tu_to_float(m->vb, C), C);
    tu_dbuf gxq = grad_buf(gq0, m->nxq, accumulate);
    tu_dbuf gxk = sk ? gxq : grad_buf(gk0, m->nxk, accumulate);
    tu_dbuf gxv = sv ? gxk : grad_buf(gv0, m->nxv, accumulate);
    tu_dbuf gqb_d = tu_upload(gqb0, C), gvb_d = tu_upload(gvb0, C);
    tu_dbuf d_y = tu_filled(ny, NAN), d_dy = tu_upload(dy, ny);
    mha_dev d = {xq.buf, xk.buf, xv.buf, qb.buf, vb.buf,
                 gxq.buf, gxk.buf, gxv.buf, gqb_d.buf, gvb_d.buf};
    dev_mha(m, &d, &d_y, &d_dy, accumulate);

    tu_expect("mha y", &d_y, y, TOL);
    tu_expect("mha dxq", &gxq, gq, TOL);
    if (!sk) {
        tu_expect("mha dxk", &gxk, gk, TOL);
        tu_free(&xk);
        tu_free(&gxk);
    }
    if (!sv) {
        tu_expect("mha dxv", &gxv, gv, TOL);
        tu_free(&xv);
        tu_free(&gxv);
    }
    tu_expect("mha dq_bias", &gqb_d, gqb, TOL);
    tu_expect("mha dv_bias", &gvb_d, gvb, TOL);
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
    return tu_dot(s->g, s->y, s->m->B * s->m->Nq * s->m->H * s->m->dh);
}

static void mha_fd_case(mha *m, unsigned seed)
{
    const size_t C = m->H * m->dh, ny = m->B * m->Nq * C;
    mha_inputs(m, seed);
    mha_fd s = {m, tu_dvec(ny), tu_to_double(tu_frand(ny, -1, 1, seed + 5), ny)};
    double *gq, *gk, *gv, *gqb = tu_dvec(C), *gvb = tu_dvec(C);
    mha_grads(m, NULL, NULL, NULL, &gq, &gk, &gv);
    ref_mha_backward(gq, gk, gv, gqb, gvb, s.g, m);
    tu_fd_check("mha ref dxq", gq, mha_loss, &s, m->xq, m->nxq, FD_TOL);
    if (m->share < 2)
        tu_fd_check("mha ref dxk", gk, mha_loss, &s, m->xk, m->nxk, FD_TOL);
    if (m->share < 1)
        tu_fd_check("mha ref dxv", gv, mha_loss, &s, m->xv, m->nxv, FD_TOL);
    tu_fd_check("mha ref dq_bias", gqb, mha_loss, &s, m->qb, C, FD_TOL);
    tu_fd_check("mha ref dv_bias", gvb, mha_loss, &s, m->vb, C, FD_TOL);
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

static Suite *ops_mha_suite(void)
{
    Suite *s = suite_create("ops_mha");
    TCase *tc = tu_tcase(s, "attention", 120);
    tcase_add_test(tc, test_attention_core_fd);
    tcase_add_loop_test(tc, test_mha_self, 0, 2);
    tcase_add_loop_test(tc, test_mha_cross, 0, 2);
    tcase_add_test(tc, test_mha_fd);
    return s;
}

TU_MAIN(ops_mha_suite)

/* blocks.c: the transformer blocks of CAE, forward above backward.
 *
 * Self-attention block (encoder and decoder), pre-norm:
 *     x = x + g1 * Attn(LN1(x));  x = x + g2 * MLP(LN2(x))
 * Attn: qkv linear without bias, bias [q_bias, 0, v_bias], scores scaled by
 * dh^-0.5, softmax over keys, proj with bias; the heads are read and written
 * in place in the linears' outputs (src/ops/mha.c).
 *
 * Regressor block (cross-attention, src/model/DESIGN.md §1):
 *     kv = concat(z, q)
 *     a  = CrossAttn(LNq(q + p_mask), LNk(kv + pk), LNv(kv))
 *     x  = q + g1 * a;  x = LN2(x);  q = x + g2 * MLP(x)
 *
 * Backward passes take the gradient of the block output in the stream
 * buffer and leave the gradient of the block input there; parameter
 * gradients accumulate. Also what each block saves, as requests to a
 * user's planner.
 */
#include "model/blocks.h"

#include "runtime/gemm.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>

/* the qkv bias [q_bias, 0, v_bias] on the q and v column blocks */
static int qkv_bias_add(cae_ctx *ctx, const cae_block_w *w, cae_buf qkv, size_t T, size_t C)
{
    if (w->q_bias.mem != NULL)
        CAE_TRY(cae_bias_add_ld(ctx, qkv, 3 * C, w->q_bias, T, C));
    if (w->v_bias.mem != NULL)
        CAE_TRY(cae_bias_add_ld(ctx, cae_buf_at(qkv, 2 * C), 3 * C, w->v_bias, T, C));
    return 0;
}

static cae_mha_dims self_dims(const cae_block_dims *d)
{
    size_t dh = d->C / d->H;
    cae_mha_dims md = {d->B, d->H, d->N, d->N, dh, (float)(1.0 / sqrt((double)dh))};
    return md;
}

int cae_block_forward(cae_ctx *ctx, const cae_block_w *w, cae_block_acts *a, cae_buf x_out,
                      cae_buf x_in, const cae_block_dims *d, cae_buf drop1, cae_buf drop2)
{
    size_t T = d->B * d->N, C = d->C, hid = d->hidden;
    cae_mha_dims md = self_dims(d);

    /* attention branch: q, k, v stay column blocks of the qkv output */
    CAE_TRY(cae_layernorm_forward(ctx, a->ln1, a->ln1_mean, a->ln1_rstd, x_in, w->norm1.w,
                                  w->norm1.b, T, C));
    CAE_TRY(cae_linear_forward(ctx, a->qkv, a->ln1, w->qkv_w, cae_buf_null(), T, C, 3 * C));
    CAE_TRY(qkv_bias_add(ctx, w, a->qkv, T, C));
    CAE_TRY(cae_mha_forward(ctx, &md, cae_tok_of(a->merged, C), a->p, cae_tok_of(a->qkv, 3 * C),
                            cae_tok_of(cae_buf_at(a->qkv, C), 3 * C),
                            cae_tok_of(cae_buf_at(a->qkv, 2 * C), 3 * C)));
    CAE_TRY(cae_linear_forward(ctx, a->attn, a->merged, w->proj.w, w->proj.b, T, C, C));
    CAE_TRY(cae_copy(ctx, a->x_mid, x_in, T * C));
    CAE_TRY(cae_residual_forward(ctx, a->x_mid, a->attn, w->gamma1, drop1, T, C, d->N));
    /* MLP branch */
    CAE_TRY(cae_layernorm_forward(ctx, a->ln2, a->ln2_mean, a->ln2_rstd, a->x_mid, w->norm2.w,
                                  w->norm2.b, T, C));
    CAE_TRY(cae_linear_forward(ctx, a->h_pre, a->ln2, w->fc1.w, cae_buf_null(), T, C, hid));
    CAE_TRY(cae_gelu_bias_forward(ctx, a->h_act, a->h_pre, w->fc1.b, T, hid));
    CAE_TRY(cae_linear_forward(ctx, a->mlp, a->h_act, w->fc2.w, w->fc2.b, T, hid, C));
    CAE_TRY(cae_copy(ctx, x_out, a->x_mid, T * C));
    return cae_residual_forward(ctx, x_out, a->mlp, w->gamma2, drop2, T, C, d->N);
}

int cae_block_backward(cae_ctx *ctx, const cae_block_w *w, const cae_block_w *g,
                       const cae_block_acts *a, cae_buf dx, cae_buf x_in, const cae_block_dims *d,
                       cae_buf drop1, cae_buf drop2, const cae_scratch *s)
{
    size_t T = d->B * d->N, C = d->C, hid = d->hidden;
    cae_mha_dims md = self_dims(d);

    /* MLP branch: dx is d(out) */
    CAE_TRY(cae_residual_backward(ctx, s->d1, g->gamma2, dx, a->mlp, w->gamma2, drop2, T, C, d->N));
    CAE_TRY(cae_linear_backward(ctx, s->dhidden, g->fc2.w, g->fc2.b, s->d1, a->h_act, w->fc2.w, T,
                                hid, C, CAE_OVERWRITE));
    CAE_TRY(cae_gelu_backward(ctx, s->dhidden2, s->dhidden, a->h_pre, T * hid));
    CAE_TRY(cae_linear_backward(ctx, s->d2, g->fc1.w, g->fc1.b, s->dhidden2, a->ln2, w->fc1.w, T, C,
                                hid, CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, dx, g->norm2.w, g->norm2.b, s->d2, a->x_mid, w->norm2.w,
                                   a->ln2_mean, a->ln2_rstd, T, C, CAE_ACCUMULATE));
    /* attention branch: dx is d(x_mid) */
    CAE_TRY(cae_residual_backward(ctx, s->d1, g->gamma1, dx, a->attn, w->gamma1, drop1, T, C, d->N));
    CAE_TRY(cae_linear_backward(ctx, s->d2, g->proj.w, g->proj.b, s->d1, a->merged, w->proj.w, T, C,
                                C, CAE_OVERWRITE));
    /* d(merged) in d2 -> dq, dk, dv straight into the column blocks of dqkv */
    CAE_TRY(cae_mha_backward(ctx, &md, cae_tok_of(s->dqkv, 3 * C),
                             cae_tok_of(cae_buf_at(s->dqkv, C), 3 * C),
                             cae_tok_of(cae_buf_at(s->dqkv, 2 * C), 3 * C), s->dp,
                             cae_tok_of(s->d2, C), cae_tok_of(a->merged, C), a->p,
                             cae_tok_of(a->qkv, 3 * C), cae_tok_of(cae_buf_at(a->qkv, C), 3 * C),
                             cae_tok_of(cae_buf_at(a->qkv, 2 * C), 3 * C)));
    if (g->q_bias.mem != NULL)
        CAE_TRY(cae_colsum_add_ld(ctx, g->q_bias, s->dqkv, 3 * C, T, C));
    if (g->v_bias.mem != NULL)
        CAE_TRY(cae_colsum_add_ld(ctx, g->v_bias, cae_buf_at(s->dqkv, 2 * C), 3 * C, T, C));
    CAE_TRY(cae_linear_backward(ctx, s->d2, g->qkv_w, cae_buf_null(), s->dqkv, a->ln1, w->qkv_w, T,
                                C, 3 * C, CAE_OVERWRITE));
    return cae_layernorm_backward(ctx, dx, g->norm1.w, g->norm1.b, s->d2, x_in, w->norm1.w,
                                  a->ln1_mean, a->ln1_rstd, T, C, CAE_ACCUMULATE);
}

static cae_mha_dims cross_dims(const cae_rblock_dims *d)
{
    size_t dh = d->C / d->H;
    cae_mha_dims md = {d->B, d->H, d->M, d->V + d->M, dh, (float)(1.0 / sqrt((double)dh))};
    return md;
}

int cae_rblock_forward(cae_ctx *ctx, const cae_rblock_w *w, cae_rblock_acts *a, cae_buf q_out,
                       cae_buf q_in, cae_buf z, cae_buf p_mask, cae_buf pk,
                       const cae_rblock_dims *d, cae_buf drop1, cae_buf drop2)
{
    size_t B = d->B, V = d->V, M = d->M, C = d->C, hid = d->hidden;
    size_t Q = B * M, KV = B * (V + M);
    cae_mha_dims md = cross_dims(d);

    /* keys and values see the visible latents and the current queries */
    CAE_TRY(cae_copy_blocks(ctx, a->kv, (V + M) * C, z, V * C, B, V * C, CAE_OVERWRITE));
    CAE_TRY(cae_copy_blocks(ctx, cae_buf_at(a->kv, V * C), (V + M) * C, q_in, M * C, B, M * C,
                            CAE_OVERWRITE));
    CAE_TRY(cae_add(ctx, a->qpos, q_in, p_mask, Q * C));
    CAE_TRY(cae_layernorm_forward(ctx, a->lnq, a->lnq_mean, a->lnq_rstd, a->qpos, w->norm_q.w,
                                  w->norm_q.b, Q, C));
    CAE_TRY(cae_add(ctx, a->kpos, a->kv, pk, KV * C));
    CAE_TRY(cae_layernorm_forward(ctx, a->lnk, a->lnk_mean, a->lnk_rstd, a->kpos, w->norm_k.w,
                                  w->norm_k.b, KV, C));
    /* values get no position embedding */
    CAE_TRY(cae_layernorm_forward(ctx, a->lnv, a->lnv_mean, a->lnv_rstd, a->kv, w->norm_v.w,
                                  w->norm_v.b, KV, C));
    /* q gets q_bias, v gets v_bias, k none */
    CAE_TRY(cae_linear_forward(ctx, a->qp, a->lnq, w->q_w, w->q_bias, Q, C, C));
    CAE_TRY(cae_linear_forward(ctx, a->kp, a->lnk, w->k_w, cae_buf_null(), KV, C, C));
    CAE_TRY(cae_linear_forward(ctx, a->vp, a->lnv, w->v_w, w->v_bias, KV, C, C));
    CAE_TRY(cae_mha_forward(ctx, &md, cae_tok_of(a->merged, C), a->p, cae_tok_of(a->qp, C),
                            cae_tok_of(a->kp, C), cae_tok_of(a->vp, C)));
    CAE_TRY(cae_linear_forward(ctx, a->attn, a->merged, w->proj.w, w->proj.b, Q, C, C));
    CAE_TRY(cae_copy(ctx, a->x, q_in, Q * C));
    CAE_TRY(cae_residual_forward(ctx, a->x, a->attn, w->gamma1, drop1, Q, C, M));
    /* LN2 normalizes the residual stream itself */
    CAE_TRY(cae_layernorm_forward(ctx, a->x2, a->x2_mean, a->x2_rstd, a->x, w->norm2.w, w->norm2.b,
                                  Q, C));
    CAE_TRY(cae_linear_forward(ctx, a->h_pre, a->x2, w->fc1.w, cae_buf_null(), Q, C, hid));
    CAE_TRY(cae_gelu_bias_forward(ctx, a->h_act, a->h_pre, w->fc1.b, Q, hid));
    CAE_TRY(cae_linear_forward(ctx, a->mlp, a->h_act, w->fc2.w, w->fc2.b, Q, hid, C));
    CAE_TRY(cae_copy(ctx, q_out, a->x2, Q * C));
    return cae_residual_forward(ctx, q_out, a->mlp, w->gamma2, drop2, Q, C, M);
}

int cae_rblock_backward(cae_ctx *ctx, const cae_rblock_w *w, const cae_rblock_w *g,
                        const cae_rblock_acts *a, cae_buf dq, cae_buf dz, cae_buf q_in,
                        const cae_rblock_dims *d, cae_buf drop1, cae_buf drop2, cae_buf dkv,
                        const cae_scratch *s)
{
    size_t B = d->B, V = d->V, M = d->M, C = d->C, hid = d->hidden;
    size_t Q = B * M, KV = B * (V + M);
    cae_mha_dims md = cross_dims(d);
    (void)q_in;

    /* q_out = x2 + g2 * MLP(x2): dq becomes d(x2) */
    CAE_TRY(cae_residual_backward(ctx, s->d1, g->gamma2, dq, a->mlp, w->gamma2, drop2, Q, C, M));
    CAE_TRY(cae_linear_backward(ctx, s->dhidden, g->fc2.w, g->fc2.b, s->d1, a->h_act, w->fc2.w, Q,
                                hid, C, CAE_OVERWRITE));
    CAE_TRY(cae_gelu_backward(ctx, s->dhidden2, s->dhidden, a->h_pre, Q * hid));
    CAE_TRY(cae_linear_backward(ctx, dq, g->fc1.w, g->fc1.b, s->dhidden2, a->x2, w->fc1.w, Q, C,
                                hid, CAE_ACCUMULATE));
    /* x2 = LN2(x): d2 = d(x) */
    CAE_TRY(cae_layernorm_backward(ctx, s->d2, g->norm2.w, g->norm2.b, dq, a->x, w->norm2.w,
                                   a->x2_mean, a->x2_rstd, Q, C, CAE_OVERWRITE));
    /* x = q_in + g1 * a */
    CAE_TRY(cae_residual_backward(ctx, s->d1, g->gamma1, s->d2, a->attn, w->gamma1, drop1, Q, C, M));
    CAE_TRY(cae_copy(ctx, dq, s->d2, Q * C));
    CAE_TRY(cae_linear_backward(ctx, s->d3, g->proj.w, g->proj.b, s->d1, a->merged, w->proj.w, Q,
                                C, C, CAE_OVERWRITE));
    /* d(merged) in d3 -> the gradients of the projected q, k, v */
    CAE_TRY(cae_mha_backward(ctx, &md, cae_tok_of(s->dqh, C), cae_tok_of(s->dkh, C),
                             cae_tok_of(s->dvh, C), s->dp, cae_tok_of(s->d3, C),
                             cae_tok_of(a->merged, C), a->p, cae_tok_of(a->qp, C),
                             cae_tok_of(a->kp, C), cae_tok_of(a->vp, C)));
    /* queries: LNq(q + p_mask) */
    CAE_TRY(cae_linear_backward(ctx, s->d3, g->q_w, g->q_bias, s->dqh, a->lnq, w->q_w, Q, C, C,
                                CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, dq, g->norm_q.w, g->norm_q.b, s->d3, a->qpos, w->norm_q.w,
                                   a->lnq_mean, a->lnq_rstd, Q, C, CAE_ACCUMULATE));
    /* keys: LNk(kv + pk) */
    CAE_TRY(cae_linear_backward(ctx, s->d2, g->k_w, cae_buf_null(), s->dkh, a->lnk, w->k_w, KV, C,
                                C, CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, dkv, g->norm_k.w, g->norm_k.b, s->d2, a->kpos, w->norm_k.w,
                                   a->lnk_mean, a->lnk_rstd, KV, C, CAE_OVERWRITE));
    /* values: LNv(kv) */
    CAE_TRY(cae_linear_backward(ctx, s->d2, g->v_w, g->v_bias, s->dvh, a->lnv, w->v_w, KV, C, C,
                                CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, dkv, g->norm_v.w, g->norm_v.b, s->d2, a->kv, w->norm_v.w,
                                   a->lnv_mean, a->lnv_rstd, KV, C, CAE_ACCUMULATE));
    /* kv = concat(z, q_in) */
    CAE_TRY(cae_copy_blocks(ctx, dz, V * C, dkv, (V + M) * C, B, V * C, CAE_ACCUMULATE));
    return cae_copy_blocks(ctx, dq, M * C, cae_buf_at(dkv, V * C), (V + M) * C, B, M * C,
                           CAE_ACCUMULATE);
}

void cae_block_view(const cae_param_table *t, const cae_arena *a, cae_block_w *b,
                    const char *prefix)
{
    char n[CAE_PARAM_NAME_MAX + 32];
#define V(s) (snprintf(n, sizeof n, "%s.%s", prefix, s), cae_params_view(t, a, n))
#define VO(s) (snprintf(n, sizeof n, "%s.%s", prefix, s), \
               cae_params_find(t, n) ? cae_params_view(t, a, n) : cae_buf_null())
    b->norm1.w = V("norm1.weight");
    b->norm1.b = V("norm1.bias");
    b->norm2.w = V("norm2.weight");
    b->norm2.b = V("norm2.bias");
    b->qkv_w = V("attn.qkv.weight");
    b->q_bias = V("attn.q_bias");
    b->v_bias = V("attn.v_bias");
    b->proj.w = V("attn.proj.weight");
    b->proj.b = V("attn.proj.bias");
    b->fc1.w = V("mlp.fc1.weight");
    b->fc1.b = V("mlp.fc1.bias");
    b->fc2.w = V("mlp.fc2.weight");
    b->fc2.b = V("mlp.fc2.bias");
    b->gamma1 = VO("gamma_1");
    b->gamma2 = VO("gamma_2");
#undef V
#undef VO
}

/* ---------------------------------------------------------------- planning */

/* a LayerNorm saves its output and each row's mean and 1/std */
static void plan_ln(cae_planner *p, cae_buf *out, cae_buf *mean, cae_buf *rstd, size_t rows,
                    size_t C)
{
    cae_plan_take(p, out, rows * C);
    cae_plan_take(p, mean, rows);
    cae_plan_take(p, rstd, rows);
}

/* the MLP branch of both blocks saves its LayerNorm's, then fc1's output
 * before and after GELU, and fc2's */
static void plan_mlp(cae_planner *p, cae_buf *ln[3], cae_buf *h_pre, cae_buf *h_act, cae_buf *out,
                     size_t rows, size_t C, size_t hid)
{
    plan_ln(p, ln[0], ln[1], ln[2], rows, C);
    cae_plan_take(p, h_pre, rows * hid);
    cae_plan_take(p, h_act, rows * hid);
    cae_plan_take(p, out, rows * C);
}

void cae_block_plan(cae_planner *p, cae_block_acts *a, const cae_block_dims *d)
{
    size_t T = d->B * d->N, C = d->C;
    cae_mha_dims md = {d->B, d->H, d->N, d->N, C / d->H, 1.0f};
    plan_ln(p, &a->ln1, &a->ln1_mean, &a->ln1_rstd, T, C);
    cae_plan_take(p, &a->qkv, T * 3 * C);
    cae_plan_take(p, &a->p, cae_mha_saved_elems(p->ctx, &md));
    cae_plan_take(p, &a->merged, T * C);
    cae_plan_take(p, &a->attn, T * C);
    cae_plan_take(p, &a->x_mid, T * C);
    plan_mlp(p, (cae_buf *[3]){&a->ln2, &a->ln2_mean, &a->ln2_rstd}, &a->h_pre, &a->h_act,
             &a->mlp, T, C, d->hidden);
}

void cae_rblock_plan(cae_planner *p, cae_rblock_acts *a, const cae_rblock_dims *d)
{
    size_t Q = d->B * d->M, KV = d->B * (d->V + d->M), C = d->C;
    cae_mha_dims md = {d->B, d->H, d->M, d->V + d->M, C / d->H, 1.0f};
    cae_plan_take(p, &a->kv, KV * C);
    cae_plan_take(p, &a->qpos, Q * C);
    plan_ln(p, &a->lnq, &a->lnq_mean, &a->lnq_rstd, Q, C);
    cae_plan_take(p, &a->kpos, KV * C);
    plan_ln(p, &a->lnk, &a->lnk_mean, &a->lnk_rstd, KV, C);
    plan_ln(p, &a->lnv, &a->lnv_mean, &a->lnv_rstd, KV, C);
    cae_plan_take(p, &a->qp, Q * C);
    cae_plan_take(p, &a->kp, KV * C);
    cae_plan_take(p, &a->vp, KV * C);
    cae_plan_take(p, &a->p, cae_mha_saved_elems(p->ctx, &md));
    cae_plan_take(p, &a->merged, Q * C);
    cae_plan_take(p, &a->attn, Q * C);
    cae_plan_take(p, &a->x, Q * C);
    plan_mlp(p, (cae_buf *[3]){&a->x2, &a->x2_mean, &a->x2_rstd}, &a->h_pre, &a->h_act, &a->mlp,
             Q, C, d->hidden);
}

/* blocks.h: the transformer blocks of CAE (blocks.c): the self-attention
 * block of the encoder and decoder and the regressor's cross-attention
 * block, their weights views, what they save for backward, and how that is
 * planned in a user's memory. */
#ifndef CAE_BLOCKS_H
#define CAE_BLOCKS_H

#include "model/params.h"
#include "runtime/runtime.h"

/* ---- views of one arena (parameters or their gradients) ---- */
typedef struct {
    cae_buf w, b;
} cae_lin_w, cae_ln_w;

typedef struct { /* encoder / decoder block */
    cae_ln_w norm1, norm2;
    cae_buf qkv_w, q_bias, v_bias;
    cae_lin_w proj, fc1, fc2;
    cae_buf gamma1, gamma2; /* absent without layer scale */
} cae_block_w;

typedef struct { /* regressor block */
    cae_ln_w norm_q, norm_k, norm_v, norm2;
    cae_buf q_w, k_w, v_w, q_bias, v_bias;
    cae_lin_w proj, fc1, fc2;
    cae_buf gamma1, gamma2; /* absent (frozen ones) with decoder layer scale 0 */
} cae_rblock_w;

/* ---- shapes and saved activations ---- */
typedef struct {
    size_t B, N, C, H, hidden; /* samples, tokens per sample, width, heads, MLP width */
} cae_block_dims;

typedef struct {
    size_t B, V, M, C, H, hidden;
} cae_rblock_dims;

typedef struct { /* what one self-attention block saves for backward */
    cae_buf ln1, ln1_mean, ln1_rstd, qkv, p, merged, attn; /* p: the attention core's (mha.c) */
    cae_buf x_mid, ln2, ln2_mean, ln2_rstd, h_pre, h_act, mlp;
} cae_block_acts;

typedef struct { /* what one regressor block saves */
    cae_buf kv, qpos, lnq, lnq_mean, lnq_rstd, kpos, lnk, lnk_mean, lnk_rstd;
    cae_buf lnv, lnv_mean, lnv_rstd, qp, kp, vp, p, merged, attn;
    cae_buf x, x2, x2_mean, x2_rstd, h_pre, h_act, mlp;
} cae_rblock_acts;

typedef struct { /* backward scratch, sized for the largest user */
    cae_buf d1, d2, d3;          /* [rows, width] */
    cae_buf dhidden, dhidden2;   /* [rows, hidden] */
    cae_buf dqkv;                /* [rows, 3 width] */
    cae_buf dqh, dkh, dvh;       /* [rows, width]: cross-attention q, k, v gradients */
    cae_buf dp;                  /* the attention core's backward scratch */
} cae_scratch;

/* ---- planning ---- */
/* A user's memory plan: take(user, slot, elems) reserves elems floats for
 * *slot, placed at once or when the user commits its plan; nonzero on
 * failure (reported by take), which sets failed and skips later requests. */
typedef struct {
    int (*take)(void *user, cae_buf *slot, size_t elems);
    void *user;
    cae_ctx *ctx;       /* sizes what the attention core saves */
    int failed;
} cae_planner;

static inline void cae_plan_take(cae_planner *p, cae_buf *slot, size_t elems)
{
    if (!p->failed && p->take(p->user, slot, elems) != 0)
        p->failed = 1;
}

/* What a block of these shapes saves, requested from p. */
void cae_block_plan(cae_planner *p, cae_block_acts *a, const cae_block_dims *d);
void cae_rblock_plan(cae_planner *p, cae_rblock_acts *a, const cae_rblock_dims *d);

/* ---- the blocks ---- */
/* Views of a self-attention block's tensors <prefix>.norm1.weight, ... in
 * an arena laid out by t (gamma_1/gamma_2 absent without layer scale). */
void cae_block_view(const cae_param_table *t, const cae_arena *a, cae_block_w *b,
                    const char *prefix);
int cae_block_forward(cae_ctx *ctx, const cae_block_w *w, cae_block_acts *a, cae_buf x_out,
                      cae_buf x_in, const cae_block_dims *d, cae_buf drop1, cae_buf drop2);
/* dx holds d(out) on entry and d(in) on return (the residual stream) */
int cae_block_backward(cae_ctx *ctx, const cae_block_w *w, const cae_block_w *g,
                       const cae_block_acts *a, cae_buf dx, cae_buf x_in, const cae_block_dims *d,
                       cae_buf drop1, cae_buf drop2, const cae_scratch *s);

int cae_rblock_forward(cae_ctx *ctx, const cae_rblock_w *w, cae_rblock_acts *a, cae_buf q_out,
                       cae_buf q_in, cae_buf z, cae_buf p_mask, cae_buf pk,
                       const cae_rblock_dims *d, cae_buf drop1, cae_buf drop2);
/* dq holds d(q_out) on entry and d(q_in) on return; dz += d(z) */
int cae_rblock_backward(cae_ctx *ctx, const cae_rblock_w *w, const cae_rblock_w *g,
                        const cae_rblock_acts *a, cae_buf dq, cae_buf dz, cae_buf q_in,
                        const cae_rblock_dims *d, cae_buf drop1, cae_buf drop2,
                        cae_buf dkv, const cae_scratch *s);

#endif

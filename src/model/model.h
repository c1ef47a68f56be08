/* model.h: the CAE model on the device: weights views, planned activations
 * and one training step (forward, loss, backward) per DESIGN.md §1. */
#ifndef CAE_MODEL_H
#define CAE_MODEL_H

#include "model/cae_config.h"
#include "model/params.h"
#include "runtime/runtime.h"

#include <stdint.h>

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

typedef struct {
    cae_buf cls_token, patch_w, patch_b;
    cae_block_w *enc;
    cae_ln_w enc_norm;
    cae_lin_w proj;
    cae_ln_w proj_norm;
    cae_buf mask_token;
    cae_rblock_w *reg;
    cae_ln_w reg_norm;
    cae_block_w *dec;
    cae_ln_w dec_norm;
    cae_lin_w head;
} cae_weights;

/* ---- shapes and saved activations ---- */
typedef struct {
    size_t B, N, C, H, hidden; /* samples, tokens per sample, width, heads, MLP width */
} cae_block_dims;

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

/* one pass of the encoder (the trained one, or the alignment pass) */
typedef struct {
    size_t J;                 /* patches it sees per sample */
    cae_buf idx;              /* int [B,J] patch indices in raster order */
    cae_buf patches, emb;     /* [B*J, 3PP], [B*J, D] */
    cae_buf cls_rows;         /* [B, D] the cls token once per sample */
    cae_buf *stream;          /* depth+1 tensors [B*(1+J), D] */
    cae_block_acts *blocks;
    cae_buf out, out_mean, out_rstd;                 /* final LN */
    cae_buf proj, proj_ln, proj_mean, proj_rstd;     /* projection (Dd != D) */
} cae_encoder_pass;

typedef struct {
    double loss, loss_main, loss_align, mlm_acc;
} cae_losses;

typedef struct cae_model {
    cae_ctx *ctx;
    cae_config cfg;
    size_t B;
    cae_param_table table;
    cae_arena params, grads;
    cae_weights W, G;
    /* inputs */
    cae_buf samples, labels;      /* [B,3,S,S]; int [B*M] */
    cae_buf pos_enc, pos_dec;     /* [N+1, D], [N+1, Dd] */
    cae_buf drop_scale;           /* [blocks*2, B] per-sample drop-path scales */
    /* encoder, alignment target, regressor, decoder */
    cae_encoder_pass enc, align;
    cae_buf latent_target;        /* [B*M, Dd] */
    cae_buf z;                    /* [B*V, Dd] visible latents, cls dropped */
    cae_buf p_vis, p_mask, pk;    /* [B*V,Dd], [B*M,Dd], [B*(V+M),Dd] */
    cae_buf *rstream;             /* regressor_depth+1 tensors [B*M, Dd] */
    cae_rblock_acts *rblocks;
    cae_buf latent_pred, lp_mean, lp_rstd;
    cae_buf *dstream;             /* decoder_depth+1 tensors [B*M, Dd] */
    cae_block_acts *dblocks;
    cae_buf dec_out, dec_mean, dec_rstd;
    cae_buf logits;               /* [B*M, K] */
    /* loss */
    cae_buf dlogits, row_loss, row_correct, sq, sums, reduce_scratch;
    cae_buf pix_raw, pix_target, pix_mean, pix_rstd, pix_ones, pix_zeros; /* pixel target */
    /* backward */
    cae_buf g_stream_enc, g_stream_dec, g_q, g_z, g_zall, g_kv, g_latent, g_proj;
    cae_scratch s;
    /* activation memory: planned once per (batch, config) */
    cl_mem *act_mem;
    int n_act_mem;
    size_t act_bytes;
    int use_drop_path;
    /* backward progress for the gradient all-reduce (see cae_model_on_grads) */
    int (*grads_ready)(void *user, size_t first);
    void *grads_ready_user;
} cae_model;

/* During backward, after each stage, call ready(user, first): the
 * gradients of every tensor with table index >= first are final (stages end
 * in reverse table order: head, decoder, regressor, projection, encoder).
 * The call comes when the stage's work is enqueued, not when it is done. */
static inline void cae_model_on_grads(cae_model *m, int (*ready)(void *user, size_t first),
                                      void *user)
{
    m->grads_ready = ready;
    m->grads_ready_user = user;
}

int cae_model_init(cae_model *m, cae_ctx *ctx, const cae_config *cfg, size_t batch);
void cae_model_free(cae_model *m);

/* Fill the parameters with the official initialization (DESIGN.md §1). */
int cae_model_init_weights(cae_model *m, uint64_t seed);

/* Upload one batch: samples [B,3,S,S]; mask [B,N] with exactly M ones per
 * row; labels [B*M] token ids of the masked patches in row-major order.
 * Refused (reported, naming the tensor) when a mask row has the wrong count
 * or a label is outside the vocabulary. */
int cae_model_set_batch(cae_model *m, const float *samples, const unsigned char *mask,
                        const int32_t *labels);

/* The same without labels: the tokenizer writes them on the device into
 * cae_model_labels(m) from the masked indices cae_model_masked_idx(m);
 * the pixel target needs none. */
int cae_model_set_inputs(cae_model *m, const float *samples, const unsigned char *mask);
static inline cae_buf cae_model_labels(const cae_model *m)
{
    return m->labels;
}
static inline cae_buf cae_model_masked_idx(const cae_model *m)
{
    return m->align.idx;
}

/* Drop-path scales for this step from (seed, step); without a call, or with
 * --drop_path 0, drop path is off. */
int cae_model_set_drop_path(cae_model *m, uint64_t seed, uint64_t step);
/* The per-sample scales themselves (0 or 1/(1-rate)), reproducible from
 * (seed, step): layout [stack][block][branch][sample] over n_stacks stacks
 * of depths[] blocks, rate linear from 0 to drop_path within each stack. */
void cae_drop_path_fill(float *s, const int *depths, int n_stacks, size_t B, double drop_path,
                        uint64_t seed, uint64_t step);

/* Forward, loss and backward: gradients of every trainable tensor are
 * written to m->grads (zeroed first); the loss terms are read back. */
int cae_model_step(cae_model *m, cae_losses *out);
/* The same in two halves: begin enqueues forward, loss and backward without
 * waiting (so the gradient all-reduce can overlap it); end waits and reads
 * the loss terms. */
int cae_model_step_begin(cae_model *m);
int cae_model_step_end(cae_model *m, cae_losses *out);

/* ---- blocks.c ---- */
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

typedef struct {
    size_t B, V, M, C, H, hidden;
} cae_rblock_dims;

int cae_rblock_forward(cae_ctx *ctx, const cae_rblock_w *w, cae_rblock_acts *a, cae_buf q_out,
                       cae_buf q_in, cae_buf z, cae_buf p_mask, cae_buf pk,
                       const cae_rblock_dims *d, cae_buf drop1, cae_buf drop2);
/* dq holds d(q_out) on entry and d(q_in) on return; dz += d(z) */
int cae_rblock_backward(cae_ctx *ctx, const cae_rblock_w *w, const cae_rblock_w *g,
                        const cae_rblock_acts *a, cae_buf dq, cae_buf dz, cae_buf q_in,
                        const cae_rblock_dims *d, cae_buf drop1, cae_buf drop2,
                        cae_buf dkv, const cae_scratch *s);

#endif

/* attentive.h: the attentive probe's trainable part on the device, as the
 * official CAE attentive probe (models/modeling_finetune.py with
 * --enable_linear_eval --linear_type attentive: query_token,
 * attentive_blocks.0 = AttentiveBlock, fc_norm = LP_BatchNorm without
 * affine, head). Per image, over its T encoder tokens x [T, D]:
 *
 *   q = LN_q(query_token)            one learned token, no position (pos_q 0)
 *   k = LN_k(x) Wk^T                 no position (pos_k 0), keys get no bias
 *   v = LN_v(x) Wv^T + v_bias
 *   a = softmax((q Wq^T + q_bias) k^T * dh^-0.5) v     per head, ONE query
 *   f = a Wp^T + bp                  no residual, no MLP
 *   y = BN(f)                        no affine, eps 1e-5 (LP_BatchNorm's default)
 *   logits = y Wh^T + bh
 *
 * BN uses the batch statistics in training (moving the running ones with
 * momentum 0.1) and the running ones in evaluation. The official evaluate()
 * calls the model with its default is_train=True, so its BN normalizes every
 * evaluation batch by that batch's own statistics; we evaluate with the
 * running statistics, which is what BN's evaluation mode means and keeps
 * accuracy independent of the evaluation batch.
 *
 * Parameters are one device buffer in the table order below (official
 * state_dict names); gradients a second one of the same layout. The
 * AttentiveBlock also owns norm2_cross, which its forward never uses: it is
 * in the table (ones and zeros, never trained) only so that checkpoints load
 * into the official model. Parameter gradients are written (zeroed first) by
 * each training step.
 */
#ifndef CAE_ATTENTIVE_H
#define CAE_ATTENTIVE_H

#include "ops/batchnorm.h"
#include "runtime/runtime.h"

#include <stdint.h>

#define CAE_ATT_BN_EPS 1e-5f

enum {
    CAE_ATT_QUERY,
    CAE_ATT_NORM_Q_W, CAE_ATT_NORM_Q_B,
    CAE_ATT_NORM_K_W, CAE_ATT_NORM_K_B,
    CAE_ATT_NORM_V_W, CAE_ATT_NORM_V_B,
    CAE_ATT_NORM2_W, CAE_ATT_NORM2_B,
    CAE_ATT_Q_BIAS, CAE_ATT_V_BIAS,
    CAE_ATT_Q_W, CAE_ATT_K_W, CAE_ATT_V_W,
    CAE_ATT_PROJ_W, CAE_ATT_PROJ_B,
    CAE_ATT_HEAD_W, CAE_ATT_HEAD_B,
    CAE_ATT_NPARAMS
};

typedef struct {
    const char *name; /* the official state_dict key */
    int ndim;
    int64_t shape[3];
    size_t numel, off; /* floats, offset in the parameter buffer */
    int trained;       /* 0: norm2_cross (unused by the forward) */
    int decay;         /* weight decay applies (2+ dims, not a bias) */
} cae_att_param;

typedef struct {
    cae_ctx *ctx;
    size_t B, T, D, H, K; /* batch, tokens per image, width, heads, classes */
    cae_att_param p[CAE_ATT_NPARAMS];
    size_t n_params;      /* floats in the parameter buffer */
    cl_mem param_mem, grad_mem, in_mem, label_mem, act_mem;
    cae_buf params, grads, x, labels;
    cae_buf run_mean, run_var; /* [D] BN running statistics */
    /* forward */
    cae_buf q_in, lnq, lnq_mean, lnq_rstd, lnk, lnk_mean, lnk_rstd, lnv, lnv_mean, lnv_rstd;
    cae_buf qp, kp, vp, prob, merged, f, bn_mean, bn_rstd, y, logits; /* prob: mha.c's saved */
    cae_buf dlogits, row_loss, row_correct;
    /* backward scratch */
    cae_buf dy, df, dmerged, dkp, dvp, dp, dqp, dlnq, dq_in, dln, dxs;
    float *host_loss; /* [B] row losses read back */
} cae_attentive;

/* Plans the head for batches of up to B images of T tokens of width D with
 * H heads (D % H == 0) and K classes; running statistics 0 and 1. */
int cae_attentive_init(cae_attentive *a, cae_ctx *ctx, size_t B, size_t T, size_t D, size_t H,
                       size_t K);
void cae_attentive_free(cae_attentive *a);
const cae_att_param *cae_attentive_find(const cae_attentive *a, const char *name);

/* The official initialization into host [n_params]: linear weights
 * trunc_normal(std 0.02) (cut at +-2, absolute, as timm), biases, q_bias,
 * v_bias 0, LayerNorms 1 and 0, query_token 0 (the official model leaves it
 * at torch.zeros), head weight normal(std 0.01) and bias 0 as
 * run_attentive.py sets them. */
void cae_attentive_init_params(const cae_attentive *a, uint64_t seed, float *host);

/* One training step on B images: x [B, T, D] (host), labels [B]: forward
 * (BN in training mode, running statistics updated), mean cross-entropy,
 * backward; the gradients are read back into grads [n_params] (host);
 * *loss the batch's mean loss. Parameters are those last written with
 * cae_write(ctx, a->params, ...). */
int cae_attentive_train_step(cae_attentive *a, const float *x, const int32_t *labels, float *grads,
                             double *loss);
/* Evaluation logits [m, K] (host) of m <= B images x [m, T, D] (host). */
int cae_attentive_logits(cae_attentive *a, const float *x, size_t m, float *logits);

#endif

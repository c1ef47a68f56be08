/* attentive.c: the attentive probe's head on the device, forward above
 * backward (see attentive.h). Built from the regressor block's ops: three
 * LayerNorms, the q/k/v linears (q with q_bias, v with v_bias, k none), the
 * token-layout attention core (src/ops/mha.c) with one query, the proj
 * linear; then the BatchNorm without affine, the linear head and the
 * cross-entropy. */
#include "eval/attentive.h"

#include "data/rng.h"
#include "runtime/errors.h"
#include "ops/batchnorm.h"
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void table(cae_attentive *a)
{
    int64_t D = (int64_t)a->D, K = (int64_t)a->K;
    static const char *names[CAE_ATT_NPARAMS] = {
        "query_token",
        "attentive_blocks.0.norm1_q.weight", "attentive_blocks.0.norm1_q.bias",
        "attentive_blocks.0.norm1_k.weight", "attentive_blocks.0.norm1_k.bias",
        "attentive_blocks.0.norm1_v.weight", "attentive_blocks.0.norm1_v.bias",
        "attentive_blocks.0.norm2_cross.weight", "attentive_blocks.0.norm2_cross.bias",
        "attentive_blocks.0.cross_attn.q_bias", "attentive_blocks.0.cross_attn.v_bias",
        "attentive_blocks.0.cross_attn.q.weight", "attentive_blocks.0.cross_attn.k.weight",
        "attentive_blocks.0.cross_attn.v.weight", "attentive_blocks.0.cross_attn.proj.weight",
        "attentive_blocks.0.cross_attn.proj.bias", "head.weight", "head.bias"};
    size_t off = 0;
    for (int i = 0; i < CAE_ATT_NPARAMS; i++) {
        cae_att_param *p = &a->p[i];
        size_t len;
        p->name = names[i];
        p->trained = i != CAE_ATT_NORM2_W && i != CAE_ATT_NORM2_B;
        if (i == CAE_ATT_QUERY) {
            p->ndim = 3;
            p->shape[0] = p->shape[1] = 1;
            p->shape[2] = D;
        } else if (i == CAE_ATT_HEAD_W) {
            p->ndim = 2;
            p->shape[0] = K;
            p->shape[1] = D;
        } else if (i == CAE_ATT_HEAD_B) {
            p->ndim = 1;
            p->shape[0] = K;
        } else if (i >= CAE_ATT_Q_W && i <= CAE_ATT_PROJ_W) {
            p->ndim = 2;
            p->shape[0] = p->shape[1] = D;
        } else {
            p->ndim = 1;
            p->shape[0] = D;
        }
        p->numel = 1;
        for (int d = 0; d < p->ndim; d++)
            p->numel *= (size_t)p->shape[d];
        len = strlen(p->name);
        /* the official get_parameter_groups: no decay for 1-D tensors and biases */
        p->decay = p->ndim > 1 && !(len >= 5 && strcmp(p->name + len - 5, ".bias") == 0);
        p->off = off;
        off += (p->numel + 15) / 16 * 16;
    }
    a->n_params = off;
}

const cae_att_param *cae_attentive_find(const cae_attentive *a, const char *name)
{
    for (int i = 0; i < CAE_ATT_NPARAMS; i++)
        if (strcmp(a->p[i].name, name) == 0)
            return &a->p[i];
    return NULL;
}

static cae_buf pv(const cae_attentive *a, cae_buf base, int i)
{
    return cae_buf_at(base, a->p[i].off);
}

/* a sequential planner over one buffer: each request 16-element aligned */
static void take(size_t *used, cae_buf *slot, size_t elems)
{
    *used = (*used + 15) / 16 * 16;
    slot->off = *used;
    *used += elems ? elems : 1;
}

int cae_attentive_init(cae_attentive *a, cae_ctx *ctx, size_t B, size_t T, size_t D, size_t H,
                       size_t K)
{
    size_t BT = B * T, used = 0, n_slots = 0;
    cae_buf *slots[64];
    CAE_TRY(cae_mha_check(ctx));
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
    a->B = B;
    a->T = T;
    a->D = D;
    a->H = H;
    a->K = K;
    if (B == 0 || T == 0 || D == 0 || H == 0 || D % H != 0 || K == 0) {
        cae_errorf("attentive head: batch %zu, tokens %zu, width %zu, heads %zu, classes %zu: "
                   "all must be positive and heads must divide the width", B, T, D, H, K);
        return -1;
    }
    table(a);
    cae_mha_dims md = {B, H, 1, T, D / H, 1.0f};
#define TAKE(slot, n) (take(&used, slot, n), slots[n_slots++] = slot)
    TAKE(&a->run_mean, D);
    TAKE(&a->run_var, D);
    TAKE(&a->q_in, B * D);
    TAKE(&a->lnq, B * D);
    TAKE(&a->lnq_mean, B);
    TAKE(&a->lnq_rstd, B);
    TAKE(&a->lnk, BT * D);
    TAKE(&a->lnk_mean, BT);
    TAKE(&a->lnk_rstd, BT);
    TAKE(&a->lnv, BT * D);
    TAKE(&a->lnv_mean, BT);
    TAKE(&a->lnv_rstd, BT);
    TAKE(&a->qp, B * D);
    TAKE(&a->kp, BT * D);
    TAKE(&a->vp, BT * D);
    TAKE(&a->prob, cae_mha_saved_elems(ctx, &md));
    TAKE(&a->merged, B * D);
    TAKE(&a->f, B * D);
    TAKE(&a->bn_mean, D);
    TAKE(&a->bn_rstd, D);
    TAKE(&a->y, B * D);
    TAKE(&a->logits, B * K);
    TAKE(&a->dlogits, B * K);
    TAKE(&a->row_loss, B);
    TAKE(&a->row_correct, B);
    TAKE(&a->dy, B * D);
    TAKE(&a->df, B * D);
    TAKE(&a->dmerged, B * D);
    TAKE(&a->dkp, BT * D);
    TAKE(&a->dvp, BT * D);
    TAKE(&a->dp, cae_mha_scratch_elems(ctx, &md));
    TAKE(&a->dqp, B * D);
    TAKE(&a->dlnq, B * D);
    TAKE(&a->dq_in, B * D);
    TAKE(&a->dln, BT * D);
    TAKE(&a->dxs, BT * D);
#undef TAKE
    if ((double)used * 4 > (double)ctx->max_alloc) {
        cae_errorf("the attentive head needs %.0f MiB of activations in one buffer for batch %zu, "
                   "more than %s allows (%.0f MiB); reduce --batch_size",
                   (double)used * 4 / 1048576.0, B, ctx->device_name,
                   (double)ctx->max_alloc / 1048576.0);
        return -1;
    }
    a->host_loss = malloc(B * sizeof *a->host_loss);
    if (!a->host_loss) {
        cae_errorf("out of host memory");
        return -1;
    }
    if (cae_alloc(ctx, used * 4, &a->act_mem) != 0 ||
        cae_alloc(ctx, a->n_params * 4, &a->param_mem) != 0 ||
        cae_alloc(ctx, a->n_params * 4, &a->grad_mem) != 0 ||
        cae_alloc(ctx, BT * D * 4, &a->in_mem) != 0 || cae_alloc(ctx, B * 4, &a->label_mem) != 0) {
        cae_attentive_free(a);
        return -1;
    }
    for (size_t i = 0; i < n_slots; i++)
        slots[i]->mem = a->act_mem;
    a->params = (cae_buf){a->param_mem, 0};
    a->grads = (cae_buf){a->grad_mem, 0};
    a->x = (cae_buf){a->in_mem, 0};
    a->labels = (cae_buf){a->label_mem, 0};
    if (cae_fill_zero(ctx, a->run_mean, D) != 0 || cae_fill_float(ctx, a->run_var, 1.0f, D) != 0 ||
        cae_fill_zero(ctx, a->params, a->n_params) != 0) {
        cae_attentive_free(a);
        return -1;
    }
    return 0;
}

void cae_attentive_free(cae_attentive *a)
{
    cae_release(&a->act_mem);
    cae_release(&a->param_mem);
    cae_release(&a->grad_mem);
    cae_release(&a->in_mem);
    cae_release(&a->label_mem);
    free(a->host_loss);
    a->host_loss = NULL;
}

/* a normal draw (Box-Muller) */
static double normal(cae_rng *r)
{
    double u1 = cae_rng_uniform(r), u2 = cae_rng_uniform(r);
    return sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-300)) * cos(6.283185307179586 * u2);
}

void cae_attentive_init_params(const cae_attentive *a, uint64_t seed, float *host)
{
    cae_rng r;
    cae_rng_seed(&r, seed ^ 0xa77e47ULL);
    memset(host, 0, a->n_params * sizeof *host);
    for (int i = 0; i < CAE_ATT_NPARAMS; i++) {
        const cae_att_param *p = &a->p[i];
        float *t = host + p->off;
        if (i == CAE_ATT_NORM_Q_W || i == CAE_ATT_NORM_K_W || i == CAE_ATT_NORM_V_W ||
            i == CAE_ATT_NORM2_W) {
            for (size_t j = 0; j < p->numel; j++)
                t[j] = 1.0f;
        } else if (i >= CAE_ATT_Q_W && i <= CAE_ATT_PROJ_W) {
            /* timm's trunc_normal_(std=.02) cuts at +-2 absolute: a plain normal here */
            for (size_t j = 0; j < p->numel; j++) {
                double v;
                do
                    v = 0.02 * normal(&r);
                while (v < -2.0 || v > 2.0);
                t[j] = (float)v;
            }
        } else if (i == CAE_ATT_HEAD_W) {
            for (size_t j = 0; j < p->numel; j++)
                t[j] = (float)(0.01 * normal(&r));
        }
    }
}

/* Forward through the block to f [m, D]. */
static cae_mha_dims attn_dims(const cae_attentive *a, size_t m)
{
    size_t dh = a->D / a->H;
    cae_mha_dims md = {m, a->H, 1, a->T, dh, (float)(1.0 / sqrt((double)dh))};
    return md;
}

static int block_forward(cae_attentive *a, size_t m)
{
    cae_ctx *ctx = a->ctx;
    cae_buf P = a->params;
    size_t T = a->T, D = a->D, MT = m * T;
    cae_mha_dims md = attn_dims(a, m);
    /* the query: one token for every image (pos_q is 0) */
    CAE_TRY(cae_broadcast_row(ctx, a->q_in, pv(a, P, CAE_ATT_QUERY), m, D));
    CAE_TRY(cae_layernorm_forward(ctx, a->lnq, a->lnq_mean, a->lnq_rstd, a->q_in,
                                  pv(a, P, CAE_ATT_NORM_Q_W), pv(a, P, CAE_ATT_NORM_Q_B), m, D));
    /* keys and values: every token (pos_k is 0) */
    CAE_TRY(cae_layernorm_forward(ctx, a->lnk, a->lnk_mean, a->lnk_rstd, a->x,
                                  pv(a, P, CAE_ATT_NORM_K_W), pv(a, P, CAE_ATT_NORM_K_B), MT, D));
    CAE_TRY(cae_layernorm_forward(ctx, a->lnv, a->lnv_mean, a->lnv_rstd, a->x,
                                  pv(a, P, CAE_ATT_NORM_V_W), pv(a, P, CAE_ATT_NORM_V_B), MT, D));
    /* q gets q_bias, v gets v_bias, k none */
    CAE_TRY(cae_linear_forward(ctx, a->qp, a->lnq, pv(a, P, CAE_ATT_Q_W), pv(a, P, CAE_ATT_Q_BIAS),
                               m, D, D));
    CAE_TRY(cae_linear_forward(ctx, a->kp, a->lnk, pv(a, P, CAE_ATT_K_W), cae_buf_null(), MT, D, D));
    CAE_TRY(cae_linear_forward(ctx, a->vp, a->lnv, pv(a, P, CAE_ATT_V_W), pv(a, P, CAE_ATT_V_BIAS),
                               MT, D, D));
    CAE_TRY(cae_mha_forward(ctx, &md, cae_tok_of(a->merged, D), a->prob, cae_tok_of(a->qp, D),
                            cae_tok_of(a->kp, D), cae_tok_of(a->vp, D)));
    return cae_linear_forward(ctx, a->f, a->merged, pv(a, P, CAE_ATT_PROJ_W),
                              pv(a, P, CAE_ATT_PROJ_B), m, D, D);
}

/* d(f) in a->df to the block's parameter gradients (the encoder is frozen:
 * nothing flows into x). */
static int block_backward(cae_attentive *a)
{
    cae_ctx *ctx = a->ctx;
    cae_buf P = a->params, G = a->grads;
    size_t B = a->B, T = a->T, D = a->D, BT = B * T;
    cae_mha_dims md = attn_dims(a, B);
    CAE_TRY(cae_linear_backward(ctx, a->dmerged, pv(a, G, CAE_ATT_PROJ_W), pv(a, G, CAE_ATT_PROJ_B),
                                a->df, a->merged, pv(a, P, CAE_ATT_PROJ_W), B, D, D,
                                CAE_OVERWRITE));
    CAE_TRY(cae_mha_backward(ctx, &md, cae_tok_of(a->dqp, D), cae_tok_of(a->dkp, D),
                             cae_tok_of(a->dvp, D), a->dp, cae_tok_of(a->dmerged, D),
                             cae_tok_of(a->merged, D), a->prob, cae_tok_of(a->qp, D),
                             cae_tok_of(a->kp, D), cae_tok_of(a->vp, D)));
    /* the query path, down to the one query token (summed over the batch) */
    CAE_TRY(cae_linear_backward(ctx, a->dlnq, pv(a, G, CAE_ATT_Q_W), pv(a, G, CAE_ATT_Q_BIAS),
                                a->dqp, a->lnq, pv(a, P, CAE_ATT_Q_W), B, D, D, CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, a->dq_in, pv(a, G, CAE_ATT_NORM_Q_W),
                                   pv(a, G, CAE_ATT_NORM_Q_B), a->dlnq, a->q_in,
                                   pv(a, P, CAE_ATT_NORM_Q_W), a->lnq_mean, a->lnq_rstd, B, D,
                                   CAE_OVERWRITE));
    CAE_TRY(cae_colsum_add(ctx, pv(a, G, CAE_ATT_QUERY), a->dq_in, B, D));
    /* keys; d(x) goes to scratch, the LayerNorm parameters' gradients are what counts */
    CAE_TRY(cae_linear_backward(ctx, a->dln, pv(a, G, CAE_ATT_K_W), cae_buf_null(), a->dkp, a->lnk,
                                pv(a, P, CAE_ATT_K_W), BT, D, D, CAE_OVERWRITE));
    CAE_TRY(cae_layernorm_backward(ctx, a->dxs, pv(a, G, CAE_ATT_NORM_K_W),
                                   pv(a, G, CAE_ATT_NORM_K_B), a->dln, a->x,
                                   pv(a, P, CAE_ATT_NORM_K_W), a->lnk_mean, a->lnk_rstd, BT, D,
                                   CAE_OVERWRITE));
    /* values */
    CAE_TRY(cae_linear_backward(ctx, a->dln, pv(a, G, CAE_ATT_V_W), pv(a, G, CAE_ATT_V_BIAS), a->dvp,
                                a->lnv, pv(a, P, CAE_ATT_V_W), BT, D, D, CAE_OVERWRITE));
    return cae_layernorm_backward(ctx, a->dxs, pv(a, G, CAE_ATT_NORM_V_W),
                                  pv(a, G, CAE_ATT_NORM_V_B), a->dln, a->x,
                                  pv(a, P, CAE_ATT_NORM_V_W), a->lnv_mean, a->lnv_rstd, BT, D,
                                  CAE_OVERWRITE);
}

int cae_attentive_train_step(cae_attentive *a, const float *x, const int32_t *labels, float *grads,
                             double *loss)
{
    cae_ctx *ctx = a->ctx;
    cae_buf P = a->params, G = a->grads;
    size_t B = a->B, D = a->D, K = a->K;
    double s = 0;
    CAE_TRY(cae_write(ctx, a->x, x, B * a->T * D * 4));
    CAE_TRY(cae_write(ctx, a->labels, labels, B * 4));
    CAE_TRY(block_forward(a, B));
    CAE_TRY(cae_batchnorm_forward_train(ctx, a->y, a->bn_mean, a->bn_rstd, a->run_mean, a->run_var,
                                        a->f, B, D, CAE_ATT_BN_EPS, CAE_BN_MOMENTUM));
    CAE_TRY(cae_linear_forward(ctx, a->logits, a->y, pv(a, P, CAE_ATT_HEAD_W),
                               pv(a, P, CAE_ATT_HEAD_B), B, D, K));
    CAE_TRY(cae_cross_entropy(ctx, a->dlogits, a->row_loss, a->row_correct, a->logits, a->labels,
                              (float)(1.0 / (double)B), B, K));
    CAE_TRY(cae_fill_zero(ctx, G, a->n_params));
    CAE_TRY(cae_linear_backward(ctx, a->dy, pv(a, G, CAE_ATT_HEAD_W), pv(a, G, CAE_ATT_HEAD_B),
                                a->dlogits, a->y, pv(a, P, CAE_ATT_HEAD_W), B, D, K,
                                CAE_OVERWRITE));
    CAE_TRY(cae_batchnorm_backward(ctx, a->df, a->dy, a->f, a->bn_mean, a->bn_rstd, B, D));
    CAE_TRY(block_backward(a));
    CAE_TRY(cae_read(ctx, a->host_loss, a->row_loss, B * 4));
    for (size_t i = 0; i < B; i++)
        s += a->host_loss[i];
    *loss = s / (double)B;
    return cae_read(ctx, grads, G, a->n_params * 4);
}

int cae_attentive_logits(cae_attentive *a, const float *x, size_t m, float *logits)
{
    cae_ctx *ctx = a->ctx;
    cae_buf P = a->params;
    if (m == 0)
        return 0;
    if (m > a->B) {
        cae_errorf("internal error: %zu images for an attentive head planned for %zu", m, a->B);
        return -1;
    }
    CAE_TRY(cae_write(ctx, a->x, x, m * a->T * a->D * 4));
    CAE_TRY(block_forward(a, m));
    CAE_TRY(cae_batchnorm_forward_eval(ctx, a->y, a->run_mean, a->run_var, a->f, m, a->D,
                                       CAE_ATT_BN_EPS));
    CAE_TRY(cae_linear_forward(ctx, a->logits, a->y, pv(a, P, CAE_ATT_HEAD_W),
                               pv(a, P, CAE_ATT_HEAD_B), m, a->D, a->K));
    return cae_read(ctx, logits, a->logits, m * a->K * 4);
}

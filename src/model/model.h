/* model.h: the CAE model on the device: weights views, planned activations
 * and one training step (forward, loss, backward) per src/model/DESIGN.md §1. Its
 * blocks are in blocks.h, its encoder (shared with evaluation and
 * fine-tuning) in encoder.h. */
#ifndef CAE_MODEL_H
#define CAE_MODEL_H

#include "model/blocks.h"
#include "model/cae_config.h"
#include "model/encoder.h"
#include "model/params.h"
#include "runtime/runtime.h"

#include <stdint.h>

/* views of one arena (parameters or their gradients) */
typedef struct {
    cae_encoder_w enc;
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

/* one pass of the encoder (the trained one, or the alignment pass) */
typedef struct {
    cae_encoder_acts acts;                           /* tokens and blocks */
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

/* Fill the parameters with the official initialization (src/model/DESIGN.md §1). */
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
    return m->align.acts.idx;
}

/* Drop-path scales for this step from (seed, step) (encoder.h's schedule);
 * without a call, or with --drop_path 0, drop path is off. */
int cae_model_set_drop_path(cae_model *m, uint64_t seed, uint64_t step);

/* Forward, loss and backward: gradients of every trainable tensor are
 * written to m->grads (zeroed first); the loss terms are read back. */
int cae_model_step(cae_model *m, cae_losses *out);
/* The same in two halves: begin enqueues forward, loss and backward without
 * waiting (so the gradient all-reduce can overlap it); end waits and reads
 * the loss terms. */
int cae_model_step_begin(cae_model *m);
int cae_model_step_end(cae_model *m, cae_losses *out);

#endif

/* encoder_eval.h: a frozen CAE encoder for the evaluation programs.
 *
 * The encoder.* tensors of the full parameter table (the same layout as
 * training, so checkpoints and converted official weights load unchanged),
 * either loaded (--finetune FILE) or freshly initialized with the official
 * rules (--finetune random, the same draws as cae_model_init_weights), and a
 * forward over ALL patches (no mask): the model's encoder (model/encoder.h:
 * cls + patch embeddings with the fixed sin-cos positions, the blocks), then
 * the final LayerNorm. Forward only; the activations are planned once for
 * the batch size given to cae_encoder_eval_init and reused by every call
 * (one block's worth: the encoder runs in place on one residual stream).
 */
#ifndef CAE_ENCODER_EVAL_H
#define CAE_ENCODER_EVAL_H

#include "model/model.h"

#include <stdint.h>

/* What a forward hands back per image: the cls token of the final norm, the
 * mean of the patch tokens (the final norm's output; a built model has its
 * final norm), every token [cls, patches] of the final norm, or every token
 * of the last block before the final norm. */
typedef enum { CAE_POOL_CLS, CAE_POOL_MEAN, CAE_POOL_TOKENS, CAE_POOL_TOKENS_PRENORM } cae_pool;

typedef struct {
    cae_ctx *ctx;
    cae_config cfg;
    size_t B;                 /* the largest batch a forward takes */
    cae_param_table table;    /* the whole model's table (encoder.* used) */
    cae_arena params;
    cae_encoder_w w;
    cae_ln_w norm;
    /* activations: the inputs in buffers of their own, the rest in act_mem */
    cl_mem samples_mem, idx_mem, act_mem;
    cae_buf samples, pos;     /* [B,3,S,S], [N+1, D] */
    cae_encoder_acts enc;     /* over all N patches, in place */
    cae_buf out, out_mean, out_rstd;
    cae_buf pooled;           /* [B, D] */
} cae_encoder_eval;

/* Plan the encoder for batches of up to `batch` images of cfg's size. */
int cae_encoder_eval_init(cae_encoder_eval *e, cae_ctx *ctx, const cae_config *cfg, size_t batch);
void cae_encoder_eval_free(cae_encoder_eval *e);

/* "random": the official initialization from seed; anything else: a
 * checkpoint or weights .safetensors holding (at least) the encoder.*
 * tensors of this configuration. */
int cae_encoder_eval_load(cae_encoder_eval *e, const char *finetune, uint64_t seed);

/* Floats per image a forward with this pooling writes: D, or (N+1)*D for
 * the token pools. */
size_t cae_encoder_eval_feature_size(const cae_encoder_eval *e, cae_pool pool);

/* features [n, feature_size] (host) of n <= B images [n,3,S,S] (host,
 * normalized), as pool says. */
int cae_encoder_eval_forward(cae_encoder_eval *e, const float *images, size_t n, cae_pool pool,
                             float *features);

#endif

/* finetune_model.h: the CAE encoder as a trainable classifier, the
 * VisionTransformer of the official modeling_finetune.py with
 * use_mean_pooling:
 *
 *   tokens = [cls, patch_embed(patches) + sin-cos positions]
 *   blocks (layer scale, q/v biases, drop path rising linearly to
 *           cfg.drop_path over the blocks)
 *   pooled = mean of the patch tokens (cls excluded)
 *   logits = head(fc_norm(pooled))      fc_norm: LayerNorm, eps 1e-6
 *
 * Its parameter table holds the official fine-tuning keys (cls_token,
 * patch_embed.proj.*, blocks.i.*, fc_norm.*, head.*); the encoder's final
 * norm is not part of it (mean pooling replaces it by fc_norm). No weight
 * decay for 1-D tensors, biases and cls_token (the official skip list).
 * Every activation of the forward is kept for the backward, which writes
 * the gradients of all tensors into the gradient arena.
 */
#ifndef CAE_FINETUNE_MODEL_H
#define CAE_FINETUNE_MODEL_H

#include "model/model.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    cae_encoder_w enc;        /* model/encoder.h, under the keys cls_token, ... */
    cae_ln_w fc_norm;
    cae_lin_w head;
} cae_ft_weights;

typedef struct {
    cae_ctx *ctx;
    cae_config cfg;
    size_t B, K;              /* the largest batch; classes */
    cae_param_table table;
    cae_arena params, grads;
    cae_ft_weights W, G;
    /* every activation lives in a buffer of its own: mem[0..n_mem) */
    cl_mem *mem;
    int n_mem, cap_mem;
    size_t act_bytes;
    cae_buf samples, targets, drop_scale;               /* host-written */
    cae_buf pos;                                        /* [N+1, D] */
    cae_encoder_acts enc;                               /* over all N patches */
    cae_buf pooled, normed, norm_mean, norm_rstd, logits;
    cae_buf dlogits, row_loss, dnormed, dpooled, gstream, loss_sum, reduce_scratch;
    cae_scratch s;
    int use_drop_path;
} cae_ft_model;

/* Plan a model of cfg's encoder with a K-class head for batches of up to
 * `batch` images. cfg must be finished (cae_config_finish). */
int cae_ft_init(cae_ft_model *m, cae_ctx *ctx, const cae_config *cfg, size_t K, size_t batch);
void cae_ft_free(cae_ft_model *m);

/* Initialize every tensor (the pretraining model's rules, from seed; the
 * head as trunc_normal(0.02) * init_scale, as the official --init_scale),
 * then, unless finetune is "random", load the encoder from a checkpoint or
 * weights file: its encoder.* tensors with the prefix stripped (or tensors
 * already under the fine-tuning keys). Like the official load_state_dict,
 * the tensors left initialized and the file's tensors not used are listed
 * on `report`; a head of another shape is dropped. A tensor of the model
 * with another shape in the file, or a file with none of the model's
 * tensors, is an error naming it. */
int cae_ft_load(cae_ft_model *m, const char *finetune, uint64_t seed, double init_scale,
                FILE *report);

/* Forward of n <= B images [n,3,S,S] (host, normalized) in evaluation mode
 * (no drop path); logits [n,K] read back into the host array. */
int cae_ft_logits(cae_ft_model *m, const float *images, size_t n, float *logits);

/* One training step on B images with soft targets [B,K] (host): forward
 * with drop path drawn from (seed, step) when cfg.drop_path > 0, the mean
 * soft-target cross-entropy, and the backward into m->grads (zeroed
 * first). *loss gets the mean loss (read back: the call waits). */
int cae_ft_train_step(cae_ft_model *m, const float *images, const float *targets,
                      uint64_t seed, uint64_t step, double *loss);

#endif

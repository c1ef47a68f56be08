/* optim.h: AdamW over the flat parameter arena, with global-norm gradient
 * clipping, as torch.optim.AdamW after torch.nn.utils.clip_grad_norm_.
 *
 * Weight decay applies to the tensors whose table entry says so (2+ dims,
 * not a bias); the table lays those out first in each arena buffer, so one
 * kernel per buffer covers a decayed prefix and an undecayed rest. The
 * moments live in two more arenas with the parameter layout. */
#ifndef CAE_OPTIM_H
#define CAE_OPTIM_H

#include "model/params.h"
#include "runtime/runtime.h"

#include <stdint.h>

typedef struct {
    double lr, weight_decay;
    double beta1, beta2, eps;
    double clip_grad; /* max global L2 norm; <= 0: no clipping */
} cae_adamw_hparams;

typedef struct cae_adamw cae_adamw;

int cae_adamw_new(cae_adamw **out, cae_ctx *ctx, const cae_param_table *t, const cae_arena *params,
                  const cae_arena *grads);
void cae_adamw_free(cae_adamw *o);

/* One step: the global gradient norm (before clipping) is written to the
 * device float grad_norm; gradients are clipped on the device (no host
 * round trip); then the update with bias correction for step t+1. */
int cae_adamw_step(cae_adamw *o, const cae_adamw_hparams *h, cae_buf grad_norm);
/* The same with a learning-rate factor per table entry (layer-wise lr
 * decay, as torch.optim.AdamW parameter groups with lr = h->lr *
 * lr_scale[i]): tensor i steps at lr * lr_scale[i] and, when its entry
 * decays, decays by lr * lr_scale[i] * weight_decay. One launch per
 * tensor; lr_scale NULL is cae_adamw_step. */
int cae_adamw_step_scaled(cae_adamw *o, const cae_adamw_hparams *h, const double *lr_scale,
                          cae_buf grad_norm);

/* State for checkpoints: first/second moment arenas and the step count. */
const cae_arena *cae_adamw_exp_avg(const cae_adamw *o);
const cae_arena *cae_adamw_exp_avg_sq(const cae_adamw *o);
uint64_t cae_adamw_steps(const cae_adamw *o);
void cae_adamw_set_steps(cae_adamw *o, uint64_t steps);

#endif

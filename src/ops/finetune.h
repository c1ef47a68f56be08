/* finetune.h: the ops of the fine-tuning head (mean pooling of the patch
 * tokens, soft-target cross-entropy). Kept out of ops.h, which belongs to
 * the pretraining step's ops. Kernels: cl/finetune.cl. */
#ifndef CAE_OPS_FINETUNE_H
#define CAE_OPS_FINETUNE_H

#include "runtime/runtime.h"

/* out[b,c] = mean over n in [1, N] of x[b*(N+1) + n, c] (row 0, the cls
 * token, excluded) */
int cae_mean_pool_forward(cae_ctx *ctx, cae_buf out /* [B,C] */, cae_buf x /* [B*(N+1),C] */,
                          size_t B, size_t N, size_t C);
/* dx[b*(N+1) + n, c] = dout[b,c] / N for n >= 1, 0 for the cls rows (overwrite) */
int cae_mean_pool_backward(cae_ctx *ctx, cae_buf dx /* [B*(N+1),C] */, cae_buf dout /* [B,C] */,
                           size_t B, size_t N, size_t C);
/* row_loss[r] = sum_k -targets[r,k] log_softmax(logits[r])[k];
 * dlogits[r] = grad_scale * (sum_k targets[r,k] * softmax(logits[r]) - targets[r])
 * (skipped when dlogits is absent) */
int cae_soft_cross_entropy(cae_ctx *ctx, cae_buf dlogits /* [R,K] */, cae_buf row_loss /* [R] */,
                           cae_buf logits /* [R,K] */, cae_buf targets /* [R,K] */,
                           float grad_scale, size_t R, size_t K);

#endif

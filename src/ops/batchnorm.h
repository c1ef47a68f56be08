/* batchnorm.h: BatchNorm1d without affine parameters over [B, C], for the
 * evaluation heads (eps CAE_BN_EPS, running-statistics momentum 0.1 as
 * torch). Kept out of ops.h, which belongs to the training step's ops. */
#ifndef CAE_OPS_BATCHNORM_H
#define CAE_OPS_BATCHNORM_H

#include "runtime/runtime.h"

#define CAE_BN_EPS 1e-6f
#define CAE_BN_MOMENTUM 0.1f

/* Training mode: mean[c], rstd[c] = batch mean and 1/sqrt(biased var + eps);
 * y = (x - mean) * rstd. run_mean/run_var (both present or both absent)
 * move by momentum toward the batch mean and unbiased variance. */
int cae_batchnorm_forward_train(cae_ctx *ctx, cae_buf y /* [B,C] */, cae_buf mean /* [C] */,
                                cae_buf rstd /* [C] */, cae_buf run_mean /* [C] */,
                                cae_buf run_var /* [C] */, cae_buf x /* [B,C] */, size_t B,
                                size_t C, float eps, float momentum);
/* Evaluation mode: y = (x - run_mean) / sqrt(run_var + eps) */
int cae_batchnorm_forward_eval(cae_ctx *ctx, cae_buf y /* [B,C] */, cae_buf run_mean /* [C] */,
                               cae_buf run_var /* [C] */, cae_buf x /* [B,C] */, size_t B,
                               size_t C, float eps);
/* dx = d/dx of the training-mode forward (overwrite) */
int cae_batchnorm_backward(cae_ctx *ctx, cae_buf dx /* [B,C] */, cae_buf dy /* [B,C] */,
                           cae_buf x /* [B,C] */, cae_buf mean /* [C] */, cae_buf rstd /* [C] */,
                           size_t B, size_t C);

#endif

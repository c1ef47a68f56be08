/* batchnorm.c: BatchNorm1d without affine parameters (the linear and
 * attentive probes' head, torch.nn.BatchNorm1d(C, affine=False, eps=1e-6));
 * kernels in cl/batchnorm.cl. */
#include "ops/batchnorm.h"

int cae_batchnorm_forward_train(cae_ctx *ctx, cae_buf y, cae_buf mean, cae_buf rstd,
                                cae_buf run_mean, cae_buf run_var, cae_buf x, size_t B, size_t C,
                                float eps, float momentum)
{
    int update = run_mean.mem != NULL && run_var.mem != NULL;
    if (B == 0 || C == 0)
        return 0;
    /* one work-item per column; the running statistics are not read without update */
    return cae_run_1d(ctx, CAE_K_batchnorm_forward_train, C,
                      CAE_ARGS(CAE_BUF(y), CAE_BUF(mean), CAE_BUF(rstd),
                               CAE_BUF(update ? run_mean : cae_buf_null()),
                               CAE_BUF(update ? run_var : cae_buf_null()), CAE_BUF(x), CAE_ULONG(B),
                               CAE_ULONG(C), CAE_FLOAT(eps), CAE_FLOAT(momentum), CAE_INT(update)));
}

int cae_batchnorm_forward_eval(cae_ctx *ctx, cae_buf y, cae_buf run_mean, cae_buf run_var,
                               cae_buf x, size_t B, size_t C, float eps)
{
    if (B == 0 || C == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_batchnorm_forward_eval, C,
                      CAE_ARGS(CAE_BUF(y), CAE_BUF(run_mean), CAE_BUF(run_var), CAE_BUF(x),
                               CAE_ULONG(B), CAE_ULONG(C), CAE_FLOAT(eps)));
}

int cae_batchnorm_backward(cae_ctx *ctx, cae_buf dx, cae_buf dy, cae_buf x, cae_buf mean,
                           cae_buf rstd, size_t B, size_t C)
{
    if (B == 0 || C == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_batchnorm_backward, C,
                      CAE_ARGS(CAE_BUF(dx), CAE_BUF(dy), CAE_BUF(x), CAE_BUF(mean), CAE_BUF(rstd),
                               CAE_ULONG(B), CAE_ULONG(C)));
}

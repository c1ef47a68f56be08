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
    cl_kernel k = cae_kernel(ctx, "batchnorm_forward_train");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, y));
    CAE_TRY(cae_arg_buf(k, &i, mean));
    CAE_TRY(cae_arg_buf(k, &i, rstd));
    CAE_TRY(cae_arg_buf(k, &i, update ? run_mean : cae_buf_null())); /* not read without update */
    CAE_TRY(cae_arg_buf(k, &i, update ? run_var : cae_buf_null()));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_ulong(k, &i, B));
    CAE_TRY(cae_arg_ulong(k, &i, C));
    CAE_TRY(cae_arg_float(k, &i, eps));
    CAE_TRY(cae_arg_float(k, &i, momentum));
    CAE_TRY(cae_arg_int(k, &i, update));
    return cae_launch_1d(ctx, k, C); /* one work-item per column */
}

int cae_batchnorm_forward_eval(cae_ctx *ctx, cae_buf y, cae_buf run_mean, cae_buf run_var,
                               cae_buf x, size_t B, size_t C, float eps)
{
    if (B == 0 || C == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "batchnorm_forward_eval");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, y));
    CAE_TRY(cae_arg_buf(k, &i, run_mean));
    CAE_TRY(cae_arg_buf(k, &i, run_var));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_ulong(k, &i, B));
    CAE_TRY(cae_arg_ulong(k, &i, C));
    CAE_TRY(cae_arg_float(k, &i, eps));
    return cae_launch_1d(ctx, k, C);
}

int cae_batchnorm_backward(cae_ctx *ctx, cae_buf dx, cae_buf dy, cae_buf x, cae_buf mean,
                           cae_buf rstd, size_t B, size_t C)
{
    if (B == 0 || C == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "batchnorm_backward");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, dx));
    CAE_TRY(cae_arg_buf(k, &i, dy));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_buf(k, &i, mean));
    CAE_TRY(cae_arg_buf(k, &i, rstd));
    CAE_TRY(cae_arg_ulong(k, &i, B));
    CAE_TRY(cae_arg_ulong(k, &i, C));
    return cae_launch_1d(ctx, k, C);
}

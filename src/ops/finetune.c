/* finetune.c: mean pooling of the patch tokens and soft-target
 * cross-entropy (see finetune.h). Kernels: cl/finetune.cl. */
#include "ops/finetune.h"

static int pool_launch(cae_ctx *ctx, const char *name, cae_buf out, cae_buf in, size_t B,
                       size_t N, size_t C, size_t n)
{
    cl_kernel k;
    cl_uint a = 0;
    if (n == 0)
        return 0;
    if (N == 0) {
        cae_errorf("%s: no patch tokens to pool", name);
        return -1;
    }
    if (!(k = cae_kernel(ctx, name)))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, out));
    CAE_TRY(cae_arg_buf(k, &a, in));
    CAE_TRY(cae_arg_ulong(k, &a, B));
    CAE_TRY(cae_arg_ulong(k, &a, N));
    CAE_TRY(cae_arg_ulong(k, &a, C));
    return cae_launch_1d(ctx, k, n);
}

int cae_mean_pool_forward(cae_ctx *ctx, cae_buf out, cae_buf x, size_t B, size_t N, size_t C)
{
    return pool_launch(ctx, "finetune_mean_pool", out, x, B, N, C, B * C);
}

int cae_mean_pool_backward(cae_ctx *ctx, cae_buf dx, cae_buf dout, size_t B, size_t N, size_t C)
{
    return pool_launch(ctx, "finetune_mean_pool_backward", dx, dout, B, N, C, B * (N + 1) * C);
}

int cae_soft_cross_entropy(cae_ctx *ctx, cae_buf dlogits, cae_buf row_loss, cae_buf logits,
                           cae_buf targets, float grad_scale, size_t R, size_t K)
{
    cl_kernel k;
    cl_uint a = 0;
    if (R == 0)
        return 0;
    if (K == 0 || !logits.mem || !targets.mem || !row_loss.mem) {
        cae_errorf("cae_soft_cross_entropy: K = %zu must be positive and logits, targets and "
                   "row_loss present", K);
        return -1;
    }
    if (!(k = cae_kernel(ctx, "finetune_soft_ce")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, dlogits));
    CAE_TRY(cae_arg_int(k, &a, dlogits.mem != NULL));
    CAE_TRY(cae_arg_buf(k, &a, row_loss));
    CAE_TRY(cae_arg_buf(k, &a, logits));
    CAE_TRY(cae_arg_buf(k, &a, targets));
    CAE_TRY(cae_arg_float(k, &a, grad_scale));
    CAE_TRY(cae_arg_ulong(k, &a, R));
    CAE_TRY(cae_arg_ulong(k, &a, K));
    return cae_launch_1d(ctx, k, R);
}

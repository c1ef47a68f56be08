/* finetune.c: mean pooling of the patch tokens and soft-target
 * cross-entropy (see finetune.h). Kernels: cl/finetune.cl. */
#include "ops/finetune.h"

static int pool_launch(cae_ctx *ctx, cae_kernel_id id, const char *name, cae_buf out, cae_buf in,
                       size_t B, size_t N, size_t C, size_t n)
{
    if (n == 0)
        return 0;
    if (N == 0) {
        cae_errorf("%s: no patch tokens to pool", name);
        return -1;
    }
    return cae_run_1d(ctx, id, n,
                      CAE_ARGS(CAE_BUF(out), CAE_BUF(in), CAE_ULONG(B), CAE_ULONG(N), CAE_ULONG(C)));
}

int cae_mean_pool_forward(cae_ctx *ctx, cae_buf out, cae_buf x, size_t B, size_t N, size_t C)
{
    return pool_launch(ctx, CAE_K_finetune_mean_pool, "finetune_mean_pool", out, x, B, N, C, B * C);
}

int cae_mean_pool_backward(cae_ctx *ctx, cae_buf dx, cae_buf dout, size_t B, size_t N, size_t C)
{
    return pool_launch(ctx, CAE_K_finetune_mean_pool_backward, "finetune_mean_pool_backward", dx, dout, B, N, C, B * (N + 1) * C);
}

int cae_soft_cross_entropy(cae_ctx *ctx, cae_buf dlogits, cae_buf row_loss, cae_buf logits,
                           cae_buf targets, float grad_scale, size_t R, size_t K)
{
    if (R == 0)
        return 0;
    if (K == 0 || !logits.mem || !targets.mem || !row_loss.mem) {
        cae_errorf("cae_soft_cross_entropy: K = %zu must be positive and logits, targets and "
                   "row_loss present", K);
        return -1;
    }
    return cae_run_1d(ctx, CAE_K_finetune_soft_ce, R,
                      CAE_ARGS(CAE_BUF(dlogits), CAE_INT(dlogits.mem != NULL), CAE_BUF(row_loss),
                               CAE_BUF(logits), CAE_BUF(targets), CAE_FLOAT(grad_scale),
                               CAE_ULONG(R), CAE_ULONG(K)));
}

/* softmax.c: row softmax over the last dimension and its backward, used by
 * the attention core (in place on the score matrix).
 *
 * Gradients: dx overwrites (=). y may alias x and dx may alias dy.
 * Kernels: cl/softmax.cl (one work-item per row).
 */
#include "ops/ops.h"

int cae_softmax_forward(cae_ctx *ctx, cae_buf y /* [R,K] */,
                        cae_buf x /* [R,K] */, size_t R, size_t K)
{
    if (R == 0 || K == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_softmax_forward, R,
                      CAE_ARGS(CAE_BUF(y), CAE_BUF(x), CAE_ULONG(R), CAE_ULONG(K)));
}

int cae_softmax_backward(cae_ctx *ctx, cae_buf dx /* [R,K] */,
                         cae_buf dy /* [R,K] */, cae_buf y /* [R,K] */,
                         size_t R, size_t K)
{
    if (R == 0 || K == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_softmax_backward, R,
                      CAE_ARGS(CAE_BUF(dx), CAE_BUF(dy), CAE_BUF(y), CAE_ULONG(R), CAE_ULONG(K)));
}

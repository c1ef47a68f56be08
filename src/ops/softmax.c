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
    cl_kernel k = cae_kernel(ctx, "softmax_forward");
    if (k == NULL)
        return -1;
    cl_uint a = 0;
    CAE_TRY(cae_arg_buf(k, &a, y));
    CAE_TRY(cae_arg_buf(k, &a, x));
    CAE_TRY(cae_arg_ulong(k, &a, R));
    CAE_TRY(cae_arg_ulong(k, &a, K));
    return cae_launch_1d(ctx, k, R);
}

int cae_softmax_backward(cae_ctx *ctx, cae_buf dx /* [R,K] */,
                         cae_buf dy /* [R,K] */, cae_buf y /* [R,K] */,
                         size_t R, size_t K)
{
    if (R == 0 || K == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "softmax_backward");
    if (k == NULL)
        return -1;
    cl_uint a = 0;
    CAE_TRY(cae_arg_buf(k, &a, dx));
    CAE_TRY(cae_arg_buf(k, &a, dy));
    CAE_TRY(cae_arg_buf(k, &a, y));
    CAE_TRY(cae_arg_ulong(k, &a, R));
    CAE_TRY(cae_arg_ulong(k, &a, K));
    return cae_launch_1d(ctx, k, R);
}

/* gelu.c: the exact (erf) GELU, forward and backward; kernels in cl/gelu.cl.
 *
 * Both are elementwise. The backward overwrites dx (= dy * GELU'(x)); there
 * are no parameters. y may alias x and dx may alias dy.
 */
#include "ops/ops.h"

int cae_gelu_forward(cae_ctx *ctx, cae_buf y /* [n] */, cae_buf x /* [n] */,
                     size_t n)
{
    if (n == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "gelu_forward");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, y));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_ulong(k, &i, n));
    return cae_launch_1d(ctx, k, (n + 15) / 16); /* 16 elements per work-item */
}

int cae_gelu_backward(cae_ctx *ctx, cae_buf dx /* [n] = */,
                      cae_buf dy /* [n] */, cae_buf x /* [n] */, size_t n)
{
    if (n == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "gelu_backward");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, dx));
    CAE_TRY(cae_arg_buf(k, &i, dy));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_ulong(k, &i, n));
    return cae_launch_1d(ctx, k, (n + 15) / 16); /* 16 elements per work-item */
}

int cae_gelu_bias_forward(cae_ctx *ctx, cae_buf y /* [T,C] */, cae_buf x /* [T,C] */,
                          cae_buf b /* [C] */, size_t T, size_t C)
{
    if (T == 0 || C == 0)
        return 0;
    if (b.mem == NULL)
        return cae_gelu_forward(ctx, y, x, T * C);
    cl_kernel k = cae_kernel(ctx, "gelu_bias_forward");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, y));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_buf(k, &i, b));
    CAE_TRY(cae_arg_ulong(k, &i, T * C));
    CAE_TRY(cae_arg_ulong(k, &i, C));
    return cae_launch_1d(ctx, k, (T * C + 15) / 16); /* 16 elements per work-item */
}

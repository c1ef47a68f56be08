/* layernorm.c: LayerNorm over the last dimension (eps CAE_LN_EPS), forward
 * and backward; kernels in cl/layernorm.cl.
 *
 * Forward saves the per-row mean and rstd. Backward writes dx (overwrite, or
 * += when `accumulate`, for the residual stream) and accumulates the
 * parameter gradients: dw += sum_t dy*xhat, db += sum_t dy, in a separate
 * column kernel that loops over the rows in a fixed order.
 * The row kernels come in two shapes (ctx->row_group): a row per work-item
 * (CPUs) or a row per work-group (GPUs).
 */
#include "ops/ops.h"

int cae_layernorm_forward(cae_ctx *ctx, cae_buf y /* [T,C] */,
                          cae_buf mean /* [T] */, cae_buf rstd /* [T] */,
                          cae_buf x /* [T,C] */, cae_buf w /* [C] */,
                          cae_buf b /* [C] */, size_t T, size_t C)
{
    if (T == 0 || C == 0)
        return 0; /* nothing to normalise; an empty launch is an error in CL */
    const int grouped = ctx->row_group > 0;
    cl_kernel k = cae_kernel(ctx, grouped ? "layernorm_forward_wg" : "layernorm_forward");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, y));
    CAE_TRY(cae_arg_buf(k, &i, mean));
    CAE_TRY(cae_arg_buf(k, &i, rstd));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_buf(k, &i, w));
    CAE_TRY(cae_arg_buf(k, &i, b));
    CAE_TRY(cae_arg_ulong(k, &i, T));
    CAE_TRY(cae_arg_ulong(k, &i, C));
    CAE_TRY(cae_arg_float(k, &i, CAE_LN_EPS));
    if (grouped)
        return cae_launch_rows(ctx, k, i, T, 1);
    return cae_launch_1d(ctx, k, T); /* one work-item per row */
}

int cae_layernorm_backward(cae_ctx *ctx, cae_buf dx /* [T,C] */,
                           cae_buf dw /* [C] */, cae_buf db /* [C] */,
                           cae_buf dy /* [T,C] */, cae_buf x /* [T,C] */,
                           cae_buf w /* [C] */, cae_buf mean /* [T] */,
                           cae_buf rstd /* [T] */, size_t T, size_t C,
                           int accumulate)
{
    if (T == 0 || C == 0)
        return 0;
    const int grouped = ctx->row_group > 0;
    cl_kernel k = cae_kernel(ctx, grouped ? "layernorm_backward_dx_wg" : "layernorm_backward_dx");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, dx));
    CAE_TRY(cae_arg_buf(k, &i, dy));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_buf(k, &i, w));
    CAE_TRY(cae_arg_buf(k, &i, mean));
    CAE_TRY(cae_arg_buf(k, &i, rstd));
    CAE_TRY(cae_arg_ulong(k, &i, T));
    CAE_TRY(cae_arg_ulong(k, &i, C));
    CAE_TRY(cae_arg_int(k, &i, accumulate ? 1 : 0));
    if (grouped)
        CAE_TRY(cae_launch_rows(ctx, k, i, T, 1));
    else
        CAE_TRY(cae_launch_1d(ctx, k, T)); /* one work-item per row */

    k = cae_kernel(ctx, "layernorm_backward_dwdb");
    if (!k)
        return -1;
    i = 0;
    CAE_TRY(cae_arg_buf(k, &i, dw));
    CAE_TRY(cae_arg_buf(k, &i, db));
    CAE_TRY(cae_arg_buf(k, &i, dy));
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_buf(k, &i, mean));
    CAE_TRY(cae_arg_buf(k, &i, rstd));
    CAE_TRY(cae_arg_ulong(k, &i, T));
    CAE_TRY(cae_arg_ulong(k, &i, C));
    return cae_launch_1d(ctx, k, C); /* one work-item per column */
}

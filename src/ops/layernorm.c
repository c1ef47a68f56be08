/* layernorm.c: LayerNorm over the last dimension (eps CAE_LN_EPS), forward
 * and backward; kernels in cl/layernorm.cl.
 *
 * Forward saves the per-row mean and rstd. Backward writes dx (overwrite, or
 * += with CAE_ACCUMULATE, for the residual stream) and accumulates the
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
    return cae_run_rows(ctx, CAE_K_layernorm_forward, CAE_K_layernorm_forward_wg, T, 1,
                        CAE_ARGS(CAE_BUF(y), CAE_BUF(mean), CAE_BUF(rstd), CAE_BUF(x), CAE_BUF(w),
                                 CAE_BUF(b), CAE_ULONG(T), CAE_ULONG(C), CAE_FLOAT(CAE_LN_EPS)));
}

int cae_layernorm_backward(cae_ctx *ctx, cae_buf dx /* [T,C] */,
                           cae_buf dw /* [C] */, cae_buf db /* [C] */,
                           cae_buf dy /* [T,C] */, cae_buf x /* [T,C] */,
                           cae_buf w /* [C] */, cae_buf mean /* [T] */,
                           cae_buf rstd /* [T] */, size_t T, size_t C,
                           cae_accum accumulate)
{
    if (T == 0 || C == 0)
        return 0;
    CAE_TRY(cae_run_rows(ctx, CAE_K_layernorm_backward_dx, CAE_K_layernorm_backward_dx_wg, T, 1,
                         CAE_ARGS(CAE_BUF(dx), CAE_BUF(dy), CAE_BUF(x), CAE_BUF(w), CAE_BUF(mean),
                                  CAE_BUF(rstd), CAE_ULONG(T), CAE_ULONG(C),
                                  CAE_INT(accumulate != CAE_OVERWRITE))));
    /* one work-item per column */
    return cae_run_1d(ctx, CAE_K_layernorm_backward_dwdb, C,
                      CAE_ARGS(CAE_BUF(dw), CAE_BUF(db), CAE_BUF(dy), CAE_BUF(x), CAE_BUF(mean),
                               CAE_BUF(rstd), CAE_ULONG(T), CAE_ULONG(C)));
}

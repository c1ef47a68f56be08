/* linear.c: the linear layer y = x W^T + b (PyTorch's nn.Linear layout,
 * W [O,I]) through the GEMM wrapper, plus the two small kernels it needs:
 * bias add and the column sum behind the bias gradient.
 *
 * Gradients: dW and db accumulate (+=); dx overwrites (=) unless the caller
 * asks to accumulate (residual stream, a tensor feeding several linears).
 * Kernels: cl/linear.cl.
 */
#include "ops/ops.h"
#include "runtime/gemm.h"

int cae_linear_forward(cae_ctx *ctx, cae_buf y /* [T,O] */,
                       cae_buf x /* [T,I] */, cae_buf w /* [O,I] */,
                       cae_buf b /* [O] or absent */, size_t T, size_t I,
                       size_t O)
{
    if (T == 0 || O == 0)
        return 0;
    /* y[T,O] = x[T,I] * W[O,I]^T */
    CAE_TRY(cae_gemm(ctx, 0, 1, T, O, I, 1.0f, x, I, w, I, 0.0f, y, O));
    if (b.mem != NULL)
        CAE_TRY(cae_bias_add(ctx, y, b, T, O));
    return 0;
}

int cae_linear_backward(cae_ctx *ctx, cae_buf dx /* [T,I] */,
                        cae_buf dw /* [O,I] */, cae_buf db /* [O] */,
                        cae_buf dy /* [T,O] */, cae_buf x /* [T,I] */,
                        cae_buf w /* [O,I] */, size_t T, size_t I, size_t O,
                        cae_accum accumulate)
{
    if (T == 0 || O == 0)
        return 0;
    /* dx[T,I] = (or +=) dy[T,O] * W[O,I] */
    if (dx.mem != NULL)
        CAE_TRY(cae_gemm(ctx, 0, 0, T, I, O, 1.0f, dy, O, w, I,
                         accumulate != CAE_OVERWRITE ? 1.0f : 0.0f, dx, I));
    /* dW[O,I] += dy[T,O]^T * x[T,I] */
    CAE_TRY(cae_gemm(ctx, 1, 0, O, I, T, 1.0f, dy, O, x, I, 1.0f, dw, I));
    if (db.mem != NULL)
        CAE_TRY(cae_colsum_add(ctx, db, dy, T, O));
    return 0;
}

int cae_colsum_add(cae_ctx *ctx, cae_buf out /* [C] */, cae_buf in /* [T,C] */,
                   size_t T, size_t C)
{
    return cae_colsum_add_ld(ctx, out, in, C, T, C);
}

int cae_colsum_add_ld(cae_ctx *ctx, cae_buf out /* [C] */, cae_buf in /* [T,ld] */, size_t ld,
                      size_t T, size_t C)
{
    if (C == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_linear_colsum_add, C,
                      CAE_ARGS(CAE_BUF(out), CAE_BUF(in), CAE_ULONG(T), CAE_ULONG(C), CAE_ULONG(ld)));
}

int cae_bias_add(cae_ctx *ctx, cae_buf y /* [T,C] */, cae_buf b /* [C] */,
                 size_t T, size_t C)
{
    return cae_bias_add_ld(ctx, y, C, b, T, C);
}

int cae_bias_add_ld(cae_ctx *ctx, cae_buf y /* [T,ld] */, size_t ld, cae_buf b /* [C] */,
                    size_t T, size_t C)
{
    if (T == 0 || C == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_linear_bias_add, T * C,
                      CAE_ARGS(CAE_BUF(y), CAE_BUF(b), CAE_ULONG(T), CAE_ULONG(C), CAE_ULONG(ld)));
}

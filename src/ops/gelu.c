/* gelu.c: the exact (erf) GELU, forward and backward; kernels in cl/gelu.cl.
 *
 * Both are elementwise. The backward overwrites dx (= dy * GELU'(x)); there
 * are no parameters. y may alias x and dx may alias dy.
 */
#include "ops/ops.h"

/* work-items for n elements: each takes CAE_GELU_WIDTH consecutive ones */
static size_t items(size_t n)
{
    return (n + CAE_GELU_WIDTH - 1) / CAE_GELU_WIDTH;
}

int cae_gelu_forward(cae_ctx *ctx, cae_buf y /* [n] */, cae_buf x /* [n] */,
                     size_t n)
{
    if (n == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_gelu_forward, items(n),
                      CAE_ARGS(CAE_BUF(y), CAE_BUF(x), CAE_ULONG(n)));
}

int cae_gelu_backward(cae_ctx *ctx, cae_buf dx /* [n] = */,
                      cae_buf dy /* [n] */, cae_buf x /* [n] */, size_t n)
{
    if (n == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_gelu_backward, items(n),
                      CAE_ARGS(CAE_BUF(dx), CAE_BUF(dy), CAE_BUF(x), CAE_ULONG(n)));
}

int cae_gelu_bias_forward(cae_ctx *ctx, cae_buf y /* [T,C] */, cae_buf x /* [T,C] */,
                          cae_buf b /* [C] */, size_t T, size_t C)
{
    if (T == 0 || C == 0)
        return 0;
    if (b.mem == NULL)
        return cae_gelu_forward(ctx, y, x, T * C);
    return cae_run_1d(ctx, CAE_K_gelu_bias_forward, items(T * C),
                      CAE_ARGS(CAE_BUF(y), CAE_BUF(x), CAE_BUF(b), CAE_ULONG(T * C), CAE_ULONG(C)));
}

/* loss.c: cross-entropy (with top-1 correctness) and mean squared error.
 *
 * Both ops compute their forward value and their gradient in one launch:
 * the gradient of grad_scale * sum(loss) with respect to the input. The
 * gradients overwrite (=). Every output may be absent (cae_buf_null()): the
 * kernel then skips it, so an evaluation pass can ask for the losses alone.
 * A label outside [0,K) is never used as an index: its row loss is NaN, its
 * correct flag 0 and its gradient row the scaled softmax (no one-hot).
 * Kernels: cl/loss.cl.
 */
#include "ops/ops.h"

#include <limits.h>

/* cross-entropy, a row per work-item or per work-group (ctx->row_group);
 * labels are cl_int */
int cae_cross_entropy(cae_ctx *ctx, cae_buf dlogits /* [R,K] */,
                      cae_buf row_loss /* [R] */, cae_buf row_correct /* [R] */,
                      cae_buf logits /* [R,K] */, cae_buf labels /* int [R] */,
                      float grad_scale, size_t R, size_t K)
{
    if (R == 0)
        return 0;
    if (K == 0 || K > INT_MAX || !logits.mem || !labels.mem) {
        cae_errorf("cae_cross_entropy: K = %zu must lie in [1, INT_MAX] and "
                   "logits and labels must be present", K);
        return -1;
    }
    /* a row per work-group keeps 2 floats per work-item: values and argmax indices */
    return cae_run_rows(ctx, CAE_K_loss_cross_entropy, CAE_K_loss_cross_entropy_wg, R, 2,
                        CAE_ARGS(CAE_BUF(dlogits), CAE_INT(dlogits.mem != NULL), CAE_BUF(row_loss),
                                 CAE_INT(row_loss.mem != NULL), CAE_BUF(row_correct),
                                 CAE_INT(row_correct.mem != NULL), CAE_BUF(logits), CAE_BUF(labels),
                                 CAE_FLOAT(grad_scale), CAE_ULONG(R), CAE_ULONG(K)));
}

/* squared error and its gradient, one work-item per element */
int cae_mse(cae_ctx *ctx, cae_buf dpred /* [n] */, cae_buf sq /* [n] */,
            cae_buf pred /* [n] */, cae_buf target /* [n] */, float grad_scale,
            size_t n)
{
    if (n == 0)
        return 0;
    if (!pred.mem || !target.mem) {
        cae_errorf("cae_mse: pred and target must be present");
        return -1;
    }
    return cae_run_1d(ctx, CAE_K_loss_mse, n,
                      CAE_ARGS(CAE_BUF(dpred), CAE_INT(dpred.mem != NULL), CAE_BUF(sq),
                               CAE_INT(sq.mem != NULL), CAE_BUF(pred), CAE_BUF(target),
                               CAE_FLOAT(grad_scale), CAE_ULONG(n)));
}

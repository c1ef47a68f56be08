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
    cl_kernel k;
    cl_uint a = 0;

    if (R == 0)
        return 0;
    if (K == 0 || K > INT_MAX || !logits.mem || !labels.mem) {
        cae_errorf("cae_cross_entropy: K = %zu must lie in [1, INT_MAX] and "
                   "logits and labels must be present", K);
        return -1;
    }
    const int grouped = ctx->row_group > 0;
    if (!(k = cae_kernel(ctx, grouped ? "loss_cross_entropy_wg" : "loss_cross_entropy")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, dlogits));
    CAE_TRY(cae_arg_int(k, &a, dlogits.mem != NULL));
    CAE_TRY(cae_arg_buf(k, &a, row_loss));
    CAE_TRY(cae_arg_int(k, &a, row_loss.mem != NULL));
    CAE_TRY(cae_arg_buf(k, &a, row_correct));
    CAE_TRY(cae_arg_int(k, &a, row_correct.mem != NULL));
    CAE_TRY(cae_arg_buf(k, &a, logits));
    CAE_TRY(cae_arg_buf(k, &a, labels));
    CAE_TRY(cae_arg_float(k, &a, grad_scale));
    CAE_TRY(cae_arg_ulong(k, &a, R));
    CAE_TRY(cae_arg_ulong(k, &a, K));
    if (grouped)
        return cae_launch_rows(ctx, k, a, R, 2); /* values and argmax indices */
    return cae_launch_1d(ctx, k, R);
}

/* squared error and its gradient, one work-item per element */
int cae_mse(cae_ctx *ctx, cae_buf dpred /* [n] */, cae_buf sq /* [n] */,
            cae_buf pred /* [n] */, cae_buf target /* [n] */, float grad_scale,
            size_t n)
{
    cl_kernel k;
    cl_uint a = 0;

    if (n == 0)
        return 0;
    if (!pred.mem || !target.mem) {
        cae_errorf("cae_mse: pred and target must be present");
        return -1;
    }
    if (!(k = cae_kernel(ctx, "loss_mse")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, dpred));
    CAE_TRY(cae_arg_int(k, &a, dpred.mem != NULL));
    CAE_TRY(cae_arg_buf(k, &a, sq));
    CAE_TRY(cae_arg_int(k, &a, sq.mem != NULL));
    CAE_TRY(cae_arg_buf(k, &a, pred));
    CAE_TRY(cae_arg_buf(k, &a, target));
    CAE_TRY(cae_arg_float(k, &a, grad_scale));
    CAE_TRY(cae_arg_ulong(k, &a, n));
    return cae_launch_1d(ctx, k, n);
}

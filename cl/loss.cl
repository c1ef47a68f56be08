/* loss.cl: cross-entropy with top-1 and its gradient, mean squared error.
 *
 * One work-item per row for cross-entropy (rows up to 8192 logits) on CPUs,
 * one work-group per row elsewhere; one work-item per element for MSE. Absent outputs arrive as NULL with a has_* flag of 0.
 */

#ifndef LOSS_BLOCK
#define LOSS_BLOCK 64 /* inner block of the two-level row sums */
#endif

/* sum_k exp(x[k] - m) over one row, summed in blocks of LOSS_BLOCK: the
 * rounding error grows like LOSS_BLOCK + K / LOSS_BLOCK rather than K */
float loss_row_sum_exp(__global const float *x, const ulong K, const float m)
{
    float total = 0.0f;
    for (ulong k0 = 0; k0 < K; k0 += LOSS_BLOCK) {
        const ulong k1 = min(k0 + (ulong)LOSS_BLOCK, K);
        float block = 0.0f;
        for (ulong k = k0; k < k1; ++k)
            block += exp(x[k] - m);
        total += block;
    }
    return total;
}

__kernel void loss_cross_entropy(__global float *dlogits, const ulong dlogits_off,
                                 const int has_dlogits,
                                 __global float *row_loss, const ulong row_loss_off,
                                 const int has_row_loss,
                                 __global float *row_correct,
                                 const ulong row_correct_off,
                                 const int has_row_correct,
                                 __global const float *logits, const ulong logits_off,
                                 __global const int *labels, const ulong labels_off,
                                 const float grad_scale, const ulong R,
                                 const ulong K)
{
    dlogits += dlogits_off;
    row_loss += row_loss_off;
    row_correct += row_correct_off;
    logits += logits_off;
    labels += labels_off;
    const ulong r = get_global_id(0);
    if (r >= R)
        return;
    __global const float *x = logits + r * K;
    const int label = labels[r];
    /* a label outside [0,K) is never used as an index */
    const int valid = label >= 0 && (ulong)label < K;

    /* max and argmax; the strict > keeps the first maximum */
    float m = x[0];
    ulong arg = 0;
    for (ulong k = 1; k < K; ++k) {
        if (x[k] > m) {
            m = x[k];
            arg = k;
        }
    }
    const float s = loss_row_sum_exp(x, K, m);

    if (has_row_loss) {
        /* logsumexp - x[label] = (m - x[label]) + log(s): no cancellation
         * between two large numbers */
        row_loss[r] = valid ? (m - x[label]) + log(s) : NAN;
    }
    if (has_row_correct)
        row_correct[r] = (valid && arg == (ulong)label) ? 1.0f : 0.0f;
    if (has_dlogits) {
        /* an invalid label contributes no one-hot: the row gradient is the
         * scaled softmax, and the NaN loss reports the problem */
        __global float *g = dlogits + r * K;
        const float inv = 1.0f / s;
        for (ulong k = 0; k < K; ++k) {
            const float p = exp(x[k] - m) * inv;
            const float onehot = (valid && k == (ulong)label) ? 1.0f : 0.0f;
            g[k] = grad_scale * (p - onehot);
        }
    }
}

/* The same with one work-group per row (GPUs): the max and first argmax,
 * the sum of exponentials and the gradient row each run across the group,
 * neighbouring work-items on neighbouring logits. scratch holds two floats
 * per work-item (values, then argmax indices). */
__kernel void loss_cross_entropy_wg(__global float *dlogits, const ulong dlogits_off,
                                    const int has_dlogits,
                                    __global float *row_loss, const ulong row_loss_off,
                                    const int has_row_loss,
                                    __global float *row_correct,
                                    const ulong row_correct_off,
                                    const int has_row_correct,
                                    __global const float *logits, const ulong logits_off,
                                    __global const int *labels, const ulong labels_off,
                                    const float grad_scale, const ulong R,
                                    const ulong K, __local float *scratch)
{
    const ulong r = get_group_id(0);
    const uint lid = get_local_id(0), L = get_local_size(0);
    __global const float *x = logits + logits_off + r * K;
    const int label = labels[labels_off + r];
    const int valid = label >= 0 && (ulong)label < K;
    __local int *sidx = (__local int *)(scratch + L);

    /* max and first argmax: each work-item's elements in increasing order,
     * then pairs merged keeping the larger value, on ties the lower index */
    float m = -INFINITY;
    int arg = (int)K;
    for (ulong k = lid; k < K; k += L)
        if (x[k] > m) {
            m = x[k];
            arg = (int)k;
        }
    scratch[lid] = m;
    sidx[lid] = arg;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = L / 2; s > 0; s >>= 1) {
        if (lid < s) {
            const float m2 = scratch[lid + s];
            const int a2 = sidx[lid + s];
            if (m2 > scratch[lid] || (m2 == scratch[lid] && a2 < sidx[lid])) {
                scratch[lid] = m2;
                sidx[lid] = a2;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = scratch[0];
    arg = sidx[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    float part = 0.0f;
    for (ulong k = lid; k < K; k += L)
        part += exp(x[k] - m);
    const float s = group_sum(part, scratch);

    if (lid == 0) {
        if (has_row_loss)
            row_loss[row_loss_off + r] = valid ? (m - x[label]) + log(s) : NAN;
        if (has_row_correct)
            row_correct[row_correct_off + r] = (valid && arg == label) ? 1.0f : 0.0f;
    }
    if (has_dlogits) {
        __global float *g = dlogits + dlogits_off + r * K;
        const float inv = 1.0f / s;
        for (ulong k = lid; k < K; k += L) {
            const float p = exp(x[k] - m) * inv;
            const float onehot = (valid && k == (ulong)label) ? 1.0f : 0.0f;
            g[k] = grad_scale * (p - onehot);
        }
    }
}

__kernel void loss_mse(__global float *dpred, const ulong dpred_off,
                       const int has_dpred,
                       __global float *sq, const ulong sq_off, const int has_sq,
                       __global const float *pred, const ulong pred_off,
                       __global const float *target, const ulong target_off,
                       const float grad_scale, const ulong n)
{
    dpred += dpred_off;
    sq += sq_off;
    pred += pred_off;
    target += target_off;
    const ulong i = get_global_id(0);
    if (i >= n)
        return;
    const float d = pred[i] - target[i];
    if (has_sq)
        sq[i] = d * d;
    if (has_dpred)
        dpred[i] = grad_scale * 2.0f * d;
}

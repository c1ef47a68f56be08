/* finetune.cl: the fine-tuning head's token pooling and its loss.
 *
 * finetune_mean_pool: the mean of the patch tokens of each sample (its cls
 * row 0 excluded), as modeling_finetune's use_mean_pooling; one work-item
 * per output element. finetune_mean_pool_backward spreads d(pooled) / N
 * over the patch rows and writes 0 into the cls rows.
 * finetune_soft_ce: cross-entropy against soft targets (mixup, cutmix,
 * label smoothing), as timm's SoftTargetCrossEntropy: per row
 *   loss = sum_k -t[k] log_softmax(x)[k],
 *   dx   = grad_scale * (sum_k t[k] * softmax(x) - t)
 * (sum_k t[k] is 1 for every target mixup makes); one work-item per row.
 */

__kernel void finetune_mean_pool(__global float *out, const ulong out_off,
                                 __global const float *x, const ulong x_off,
                                 const ulong B, const ulong N, const ulong C)
{
    out += out_off;
    x += x_off;
    const ulong i = get_global_id(0);
    if (i >= B * C)
        return;
    const ulong b = i / C, c = i % C;
    __global const float *rows = x + (b * (N + 1) + 1) * C + c;
    float s = 0.0f;
    for (ulong n = 0; n < N; ++n)
        s += rows[n * C];
    out[i] = s / (float)N;
}

__kernel void finetune_mean_pool_backward(__global float *dx, const ulong dx_off,
                                          __global const float *dout, const ulong dout_off,
                                          const ulong B, const ulong N, const ulong C)
{
    dx += dx_off;
    dout += dout_off;
    const ulong i = get_global_id(0);
    if (i >= B * (N + 1) * C)
        return;
    const ulong c = i % C, row = i / C, b = row / (N + 1), n = row % (N + 1);
    dx[i] = n == 0 ? 0.0f : dout[b * C + c] / (float)N;
}

__kernel void finetune_soft_ce(__global float *dlogits, const ulong dlogits_off,
                               const int has_dlogits,
                               __global float *row_loss, const ulong row_loss_off,
                               __global const float *logits, const ulong logits_off,
                               __global const float *targets, const ulong targets_off,
                               const float grad_scale, const ulong R, const ulong K)
{
    dlogits += dlogits_off;
    row_loss += row_loss_off;
    logits += logits_off;
    targets += targets_off;
    const ulong r = get_global_id(0);
    if (r >= R)
        return;
    __global const float *x = logits + r * K;
    __global const float *t = targets + r * K;
    float m = x[0];
    for (ulong k = 1; k < K; ++k)
        m = fmax(m, x[k]);
    float se = 0.0f;
    for (ulong k = 0; k < K; ++k)
        se += exp(x[k] - m);
    const float lse = m + log(se);
    float loss = 0.0f, tsum = 0.0f;
    for (ulong k = 0; k < K; ++k) {
        loss += t[k] * (lse - x[k]);
        tsum += t[k];
    }
    row_loss[r] = loss;
    if (!has_dlogits)
        return;
    for (ulong k = 0; k < K; ++k)
        dlogits[r * K + k] = grad_scale * (tsum * exp(x[k] - lse) - t[k]);
}

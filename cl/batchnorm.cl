/* batchnorm.cl: BatchNorm1d without affine parameters over [B, C] (the
 * linear probe's head), forward in training and evaluation mode, and
 * backward.
 *
 * One work-item per column looping over the B rows in order: the sums are
 * deterministic and need no queried work-group or local-memory size. The
 * head's widths (C up to a few thousand) keep this cheap.
 */

/* Training mode: batch mean and biased variance; y = (x - mean) * rstd.
 * When update is set, running statistics move by momentum:
 * run = (1 - momentum) * run + momentum * batch (the variance unbiased,
 * as torch.nn.BatchNorm1d). */
__kernel void batchnorm_forward_train(__global float *y, const ulong y_off,
                                      __global float *mean, const ulong mean_off,
                                      __global float *rstd, const ulong rstd_off,
                                      __global float *run_mean, const ulong run_mean_off,
                                      __global float *run_var, const ulong run_var_off,
                                      __global const float *x, const ulong x_off,
                                      const ulong B, const ulong C, const float eps,
                                      const float momentum, const int update)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    y += y_off;
    mean += mean_off;
    rstd += rstd_off;
    x += x_off;
    float s = 0.0f;
    for (ulong b = 0; b < B; b++)
        s += x[b * C + c];
    const float m = s / (float)B;
    float v = 0.0f;
    for (ulong b = 0; b < B; b++) {
        const float d = x[b * C + c] - m;
        v += d * d;
    }
    const float var = v / (float)B;
    const float r = rsqrt(var + eps);
    for (ulong b = 0; b < B; b++)
        y[b * C + c] = (x[b * C + c] - m) * r;
    mean[c] = m;
    rstd[c] = r;
    if (update) {
        run_mean += run_mean_off;
        run_var += run_var_off;
        const float unbiased = B > 1 ? v / (float)(B - 1) : var;
        run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * m;
        run_var[c] = (1.0f - momentum) * run_var[c] + momentum * unbiased;
    }
}

/* Evaluation mode: y = (x - run_mean) / sqrt(run_var + eps). */
__kernel void batchnorm_forward_eval(__global float *y, const ulong y_off,
                                     __global const float *run_mean, const ulong run_mean_off,
                                     __global const float *run_var, const ulong run_var_off,
                                     __global const float *x, const ulong x_off,
                                     const ulong B, const ulong C, const float eps)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    y += y_off;
    run_mean += run_mean_off;
    run_var += run_var_off;
    x += x_off;
    const float m = run_mean[c];
    const float r = rsqrt(run_var[c] + eps);
    for (ulong b = 0; b < B; b++)
        y[b * C + c] = (x[b * C + c] - m) * r;
}

/* dx = rstd / B * (B dy - sum_b dy - xhat sum_b dy xhat), xhat = (x - mean) rstd */
__kernel void batchnorm_backward(__global float *dx, const ulong dx_off,
                                 __global const float *dy, const ulong dy_off,
                                 __global const float *x, const ulong x_off,
                                 __global const float *mean, const ulong mean_off,
                                 __global const float *rstd, const ulong rstd_off,
                                 const ulong B, const ulong C)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    dx += dx_off;
    dy += dy_off;
    x += x_off;
    mean += mean_off;
    rstd += rstd_off;
    const float m = mean[c], r = rstd[c];
    float sdy = 0.0f, sdyx = 0.0f;
    for (ulong b = 0; b < B; b++) {
        const float g = dy[b * C + c];
        sdy += g;
        sdyx += g * (x[b * C + c] - m) * r;
    }
    const float inv = 1.0f / (float)B;
    for (ulong b = 0; b < B; b++) {
        const float xh = (x[b * C + c] - m) * r;
        dx[b * C + c] = r * (dy[b * C + c] - inv * sdy - xh * inv * sdyx);
    }
}

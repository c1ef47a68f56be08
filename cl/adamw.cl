/* adamw.cl: global-norm gradient clipping and the AdamW update over one
 * arena buffer, as torch.nn.utils.clip_grad_norm_ then torch.optim.AdamW.
 *
 * adamw_clip_coef (one work-item) turns the per-buffer sums of squared
 * gradients into the global norm and the clip scale; adamw_update reads
 * that scale from device memory, so the host never waits on the norm.
 * Every scalar hyperparameter arrives as the float torch would cast it to;
 * contraction into fma is off so every device rounds the same way.
 */

/* grad_norm[0] = sqrt(sum of partials[0..n)), scale[0] = the factor the
 * gradients get: min(1, clip / (norm + 1e-6)) when clip > 0, else 1. A NaN
 * norm gives a NaN scale (torch.clamp keeps NaN), so NaN reaches the
 * update rather than being hidden. */
__kernel void adamw_clip_coef(__global float *grad_norm, const ulong grad_norm_off,
                              __global float *scale, const ulong scale_off,
                              __global const float *partials, const ulong partials_off,
                              const ulong n, const float clip)
{
#pragma OPENCL FP_CONTRACT OFF
    grad_norm += grad_norm_off;
    scale += scale_off;
    partials += partials_off;
    if (get_global_id(0) != 0)
        return;
    float total = 0.0f;
    for (ulong i = 0; i < n; ++i)
        total += partials[i];
    const float norm = sqrt(total);
    grad_norm[0] = norm;
    if (clip > 0.0f) {
        const float coef = clip / (norm + 1e-6f);
        scale[0] = coef > 1.0f ? 1.0f : coef;
    } else {
        scale[0] = 1.0f;
    }
}

/* One element per work-item over a buffer of n elements, of which the first
 * decay_end get weight decay:
 *   g *= scale (written back: the gradient arena is left clipped)
 *   p *= decay                          (i < decay_end; decay = 1 - lr*wd)
 *   m = beta1 m + (1 - beta1) g
 *   v = beta2 v + (1 - beta2) g g
 *   p += -step_size m / (sqrt(v) / bc2_sqrt + eps)
 * with step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t). */
__kernel void adamw_update(__global float *p, const ulong p_off,
                           __global float *g, const ulong g_off,
                           __global float *m, const ulong m_off,
                           __global float *v, const ulong v_off,
                           __global const float *scale, const ulong scale_off,
                           const ulong n, const ulong decay_end, const float decay,
                           const float beta1, const float one_minus_beta1,
                           const float beta2, const float one_minus_beta2,
                           const float neg_step_size, const float bc2_sqrt,
                           const float eps)
{
#pragma OPENCL FP_CONTRACT OFF
    p += p_off;
    g += g_off;
    m += m_off;
    v += v_off;
    scale += scale_off;
    const ulong i = get_global_id(0);
    if (i >= n)
        return;
    const float s = scale[0];
    const float gi = g[i] * s; /* exact when s == 1 */
    if (s != 1.0f)             /* clipping active (or a NaN norm): torch scales in place */
        g[i] = gi;
    /* a select, not a branch: PoCL vectorizes this form (twice as fast) */
    const float pi = p[i] * (i < decay_end ? decay : 1.0f);
    /* the operations and their order of torch's exp_avg.mul_(beta1).add_(),
     * exp_avg_sq.mul_(beta2).addcmul_() and param.addcdiv_() */
    const float mi = m[i] * beta1 + one_minus_beta1 * gi;
    const float vi = v[i] * beta2 + one_minus_beta2 * gi * gi;
    const float denom = sqrt(vi) / bc2_sqrt + eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + neg_step_size * mi / denom;
}

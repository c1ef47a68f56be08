/* softmax.cl: numerically stable row softmax and its backward.
 *
 * One work-item per row; rows may be long (K = 8192 logits) so the sums are
 * compensated (Kahan). y may alias x and dx may alias dy: each row is read
 * and written by its own work-item only, and every element is read before
 * it is overwritten. */

/* y[r,:] = exp(x[r,:] - max) / sum exp(x[r,:] - max) */
__kernel void softmax_forward(__global float *y, const ulong y_off,
                              __global const float *x, const ulong x_off,
                              const ulong R, const ulong K)
{
    y += y_off;
    x += x_off;
    const ulong r = get_global_id(0);
    if (r >= R)
        return;
    __global const float *xr = x + r * K;
    __global float *yr = y + r * K;
    float m = -INFINITY;
    for (ulong k = 0; k < K; k++)
        m = fmax(m, xr[k]);
    /* the exponentials go to y first; with y == x nothing is read again */
    float sum = 0.0f, comp = 0.0f;
    for (ulong k = 0; k < K; k++) {
        const float e = exp(xr[k] - m);
        yr[k] = e;
        const float t = e - comp;
        const float s = sum + t;
        comp = (s - sum) - t;
        sum = s;
    }
    for (ulong k = 0; k < K; k++)
        yr[k] = yr[k] / sum;
}

/* dx[r,:] = y[r,:] * (dy[r,:] - sum_k dy[r,k] * y[r,k]) */
__kernel void softmax_backward(__global float *dx, const ulong dx_off,
                               __global const float *dy, const ulong dy_off,
                               __global const float *y, const ulong y_off,
                               const ulong R, const ulong K)
{
    dx += dx_off;
    dy += dy_off;
    y += y_off;
    const ulong r = get_global_id(0);
    if (r >= R)
        return;
    __global const float *dyr = dy + r * K;
    __global const float *yr = y + r * K;
    __global float *dxr = dx + r * K;
    float dot = 0.0f, comp = 0.0f;
    for (ulong k = 0; k < K; k++) {
        const float t = dyr[k] * yr[k] - comp;
        const float s = dot + t;
        comp = (s - dot) - t;
        dot = s;
    }
    for (ulong k = 0; k < K; k++)
        dxr[k] = yr[k] * (dyr[k] - dot);
}

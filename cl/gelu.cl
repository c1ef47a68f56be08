/* gelu.cl: the exact (erf) GELU, elementwise, one element per work-item.
 * y may alias x and dx may alias dy: each work-item reads its element before
 * writing it. */

/* y = x * Phi(x), Phi(x) = 0.5 * (1 + erf(x / sqrt(2))) */
__kernel void gelu_forward(__global float *y, const ulong y_off,
                           __global const float *x, const ulong x_off,
                           const ulong n)
{
    y += y_off;
    x += x_off;
    const ulong i = get_global_id(0);
    if (i >= n)
        return;
    const float v = x[i];
    y[i] = 0.5f * v * (1.0f + erf(v * M_SQRT1_2_F));
}

/* dx = dy * (Phi(x) + x * phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi) */
__kernel void gelu_backward(__global float *dx, const ulong dx_off,
                            __global const float *dy, const ulong dy_off,
                            __global const float *x, const ulong x_off,
                            const ulong n)
{
    dx += dx_off;
    dy += dy_off;
    x += x_off;
    const ulong i = get_global_id(0);
    if (i >= n)
        return;
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + erf(v * M_SQRT1_2_F));
    const float pdf = 0.3989422804014327f * exp(-0.5f * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
}

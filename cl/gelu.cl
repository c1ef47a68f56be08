/* gelu.cl: the exact (erf) GELU, elementwise.
 *
 * Each work-item takes GELU_WIDTH consecutive elements through float16
 * vectors: PoCL's vector erf is about 15x faster than its scalar one, and
 * GPUs lose nothing. A partial last group runs the scalar loop. y may alias
 * x and dx may alias dy: each work-item reads its elements before writing
 * them. GELU_VEC 0 keeps only the scalar loop (oclgrind's uninitialized-value
 * checker cannot follow vector loads). */

#ifndef GELU_VEC
#define GELU_VEC 1
#endif
/* Set by the host (src/runtime/kernels.h), which sizes the launches by it;
 * the vector path reads exactly one float16. */
#ifndef GELU_WIDTH
#error "GELU_WIDTH: build with -DGELU_WIDTH (src/runtime/kernels.h)"
#elif GELU_WIDTH != 16
#error "GELU_WIDTH must be 16: gelu.cl's vector path is float16"
#endif

/* y = x * Phi(x), Phi(x) = 0.5 * (1 + erf(x / sqrt(2))) */
__kernel void gelu_forward(__global float *y, const ulong y_off,
                           __global const float *x, const ulong x_off,
                           const ulong n)
{
    y += y_off;
    x += x_off;
    const ulong first = get_global_id(0) * GELU_WIDTH;
    if (first >= n)
        return;
#if GELU_VEC
    if (first + GELU_WIDTH <= n) {
        const float16 v = vload16(0, x + first);
        vstore16(0.5f * v * (1.0f + erf(v * M_SQRT1_2_F)), 0, y + first);
        return;
    }
#endif
    for (ulong i = first; i < n && i < first + GELU_WIDTH; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + erf(v * M_SQRT1_2_F));
    }
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
    const ulong first = get_global_id(0) * GELU_WIDTH;
    if (first >= n)
        return;
#if GELU_VEC
    if (first + GELU_WIDTH <= n) {
        const float16 v = vload16(0, x + first);
        const float16 cdf = 0.5f * (1.0f + erf(v * M_SQRT1_2_F));
        const float16 pdf = 0.3989422804014327f * exp(-0.5f * v * v);
        vstore16(vload16(0, dy + first) * (cdf + v * pdf), 0, dx + first);
        return;
    }
#endif
    for (ulong i = first; i < n && i < first + GELU_WIDTH; ++i) {
        const float v = x[i];
        const float cdf = 0.5f * (1.0f + erf(v * M_SQRT1_2_F));
        const float pdf = 0.3989422804014327f * exp(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

/* The first linear of an MLP and its activation in one pass:
 *     x[t,c] += b[c];  y[t,c] = GELU(x[t,c])
 * over rows of C (x keeps the pre-activation for backward). A vector group
 * stays within one row when C is a multiple of GELU_WIDTH; otherwise the
 * scalar loop runs. */
__kernel void gelu_bias_forward(__global float *y, const ulong y_off,
                                __global float *x, const ulong x_off,
                                __global const float *b, const ulong b_off,
                                const ulong n, const ulong C)
{
    y += y_off;
    x += x_off;
    b += b_off;
    const ulong first = get_global_id(0) * GELU_WIDTH;
    if (first >= n)
        return;
    const ulong row = first / C, col = first - row * C;
#if GELU_VEC
    if (first + GELU_WIDTH <= n && C % GELU_WIDTH == 0) {
        const float16 v = vload16(0, x + first) + vload16(0, b + col);
        vstore16(v, 0, x + first);
        vstore16(0.5f * v * (1.0f + erf(v * M_SQRT1_2_F)), 0, y + first);
        return;
    }
#endif
    ulong c = col;
    for (ulong i = first; i < n && i < first + GELU_WIDTH; ++i) {
        const float v = x[i] + b[c];
        x[i] = v;
        y[i] = 0.5f * v * (1.0f + erf(v * M_SQRT1_2_F));
        if (++c == C)
            c = 0;
    }
}

/* attention.cl: moving attention heads between the token layout
 * [B*N, stride] (a column block of a linear's output) and the head layout
 * [B,H,N,dh] the batched GEMMs use, plus the head-bias gradient. The
 * attention core itself is GEMMs and softmax.cl. */

/* out[b,h,n,d] = scale * (in[(b*N+n)*in_stride + col + h*dh + d]
 *                         + (has_bias ? bias[h*dh + d] : 0))
 * One work-item per output element. Serves heads_split and, with stride
 * H*dh, no bias and scale 1, heads_merge_backward. */
__kernel void attention_heads_gather(__global float *out, const ulong out_off,
                                     __global const float *in,
                                     const ulong in_off,
                                     __global const float *bias,
                                     const ulong bias_off, const int has_bias,
                                     const float scale, const ulong in_stride,
                                     const ulong col, const ulong B,
                                     const ulong N, const ulong H,
                                     const ulong dh)
{
    out += out_off;
    in += in_off;
    const ulong i = get_global_id(0);
    if (i >= B * H * N * dh)
        return;
    /* quotients and remainders by multiply-subtract: a `%` beside a `/`
     * of the same operands makes LLVM emit `freeze`, which oclgrind's
     * uninitialized-value checker cannot run */
    const ulong t = i / dh, d = i - t * dh;
    const ulong bh = t / N, n = t - bh * N;
    const ulong b = bh / H, h = bh - b * H;
    float v = in[(b * N + n) * in_stride + col + h * dh + d];
    if (has_bias) {
        bias += bias_off;  /* only touched when present: it may be NULL */
        v += bias[h * dh + d];
    }
    out[i] = scale * v;
}

/* out[(b*N+n)*out_stride + col + h*dh + d] = (or += when accumulate)
 *     scale * in[b,h,n,d]
 * One work-item per token-layout element (row b*N+n, column h*dh+d), so the
 * writes run along rows. Each output element has exactly one writer. Serves
 * heads_merge and heads_split_backward. */
__kernel void attention_heads_scatter(__global float *out, const ulong out_off,
                                      __global const float *in,
                                      const ulong in_off, const float scale,
                                      const int accumulate,
                                      const ulong out_stride, const ulong col,
                                      const ulong B, const ulong N,
                                      const ulong H, const ulong dh)
{
    out += out_off;
    in += in_off;
    const ulong i = get_global_id(0);
    const ulong C = H * dh;
    if (i >= B * N * C)
        return;
    const ulong row = i / C, c = i - row * C; /* row = b*N + n */
    const ulong b = row / N, n = row - b * N;
    const ulong h = c / dh, d = c - h * dh;
    const float v = scale * in[((b * H + h) * N + n) * dh + d];
    __global float *o = out + row * out_stride + col + c;
    if (accumulate)
        *o += v;
    else
        *o = v;
}

/* dbias[h*dh+d] += scale * sum_{b,n} dout[b,h,n,d]; one work-item per bias
 * element, b then n in order, compensated sum. */
__kernel void attention_heads_dbias(__global float *dbias,
                                    const ulong dbias_off,
                                    __global const float *dout,
                                    const ulong dout_off, const float scale,
                                    const ulong B, const ulong N,
                                    const ulong H, const ulong dh)
{
    dbias += dbias_off;
    dout += dout_off;
    const ulong j = get_global_id(0);
    if (j >= H * dh)
        return;
    const ulong h = j / dh, d = j - h * dh;
    float sum = 0.0f, comp = 0.0f;
    for (ulong b = 0; b < B; b++) {
        __global const float *src = dout + ((b * H + h) * N) * dh + d;
        for (ulong n = 0; n < N; n++) {
            const float t = src[n * dh] - comp;
            const float s = sum + t;
            comp = (s - sum) - t;
            sum = s;
        }
    }
    dbias[j] += scale * sum;
}

/* linear.cl: the element-wise parts of the linear op (the GEMMs run through
 * the GEMM wrapper): adding a bias to every row and summing columns into a
 * bias gradient. */

/* y[t*ld + c] += b[c] for c < C; one work-item per element (ld >= C lets
 * the bias go into a column block of a wider tensor, such as the q and v
 * parts of a fused qkv output) */
__kernel void linear_bias_add(__global float *y, const ulong y_off,
                              __global const float *b, const ulong b_off,
                              const ulong T, const ulong C, const ulong ld)
{
    y += y_off;
    b += b_off;
    const ulong i = get_global_id(0);
    if (i >= T * C)
        return;
    const ulong t = i / C, c = i - t * C;
    y[t * ld + c] += b[c];
}

/* out[c] += sum_t in[t*ld + c]; one work-item per column, rows in order, with a
 * compensated (Kahan) sum so long columns (T = batch * tokens) stay exact to
 * float rounding. Neighbouring work-items read neighbouring columns. */
__kernel void linear_colsum_add(__global float *out, const ulong out_off,
                                __global const float *in, const ulong in_off,
                                const ulong T, const ulong C, const ulong ld)
{
    out += out_off;
    in += in_off;
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    float sum = 0.0f, comp = 0.0f;
    for (ulong t = 0; t < T; t++) {
        const float yk = in[t * ld + c] - comp;
        const float s = sum + yk;
        comp = (s - sum) - yk;
        sum = s;
    }
    out[c] += sum;
}

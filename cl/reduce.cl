/* reduce.cl: deterministic sums into one float, and scaling.
 *
 * Pass 1 (reduce_partial): work-item i sums the contiguous chunk
 * [i*chunk_len, min(n, (i+1)*chunk_len)) into scratch[i]. Pass 2
 * (reduce_final): one work-item sums the partials into out[0]. The chunking
 * depends on n only and every add happens in a fixed order with contraction
 * into fma disabled, so the result is the same float on every device.
 */

#ifndef REDUCE_BLOCK
#define REDUCE_BLOCK 64 /* inner block of the two-level sequential sums */
#endif

/* sum of x[lo..hi) (squared when squares != 0), in blocks of REDUCE_BLOCK */
float reduce_range(__global const float *x, const ulong lo, const ulong hi,
                   const int squares)
{
#pragma OPENCL FP_CONTRACT OFF
    float total = 0.0f;
    for (ulong b0 = lo; b0 < hi; b0 += REDUCE_BLOCK) {
        const ulong b1 = min(b0 + (ulong)REDUCE_BLOCK, hi);
        float block = 0.0f;
        /* the test stays out of the loops: PoCL runs a select inside them
         * some 200 times slower */
        if (squares) {
            for (ulong i = b0; i < b1; ++i) {
                /* the product is its own statement: never fused with the add */
                const float v = x[i] * x[i];
                block += v;
            }
        } else {
            for (ulong i = b0; i < b1; ++i)
                block += x[i];
        }
        total += block;
    }
    return total;
}

__kernel void reduce_partial(__global float *scratch, const ulong scratch_off,
                             __global const float *in, const ulong in_off,
                             const ulong n, const ulong chunk_len,
                             const ulong chunks, const int squares)
{
    scratch += scratch_off;
    in += in_off;
    const ulong i = get_global_id(0);
    if (i >= chunks)
        return;
    const ulong lo = i * chunk_len;
    const ulong hi = min(lo + chunk_len, n);
    scratch[i] = reduce_range(in, lo, hi, squares);
}

/* a single work-item: the partials are few (at most a few ten thousand) */
__kernel void reduce_final(__global float *out, const ulong out_off,
                           __global const float *scratch,
                           const ulong scratch_off, const ulong chunks)
{
    out += out_off;
    scratch += scratch_off;
    if (get_global_id(0) != 0)
        return;
    out[0] = reduce_range(scratch, 0, chunks, 0);
}

__kernel void reduce_scale(__global float *x, const ulong x_off,
                           const float alpha, const ulong n)
{
    x += x_off;
    const ulong i = get_global_id(0);
    if (i >= n)
        return;
    x[i] *= alpha;
}

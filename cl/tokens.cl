/* tokens.cl: moving token rows around (gather, scatter-add, block copies,
 * row broadcast, patch extraction). One work-item per output element.
 *
 * An index outside the source never reaches memory: gathers write NaN for it
 * (so the mistake shows in the loss), the scatter-add skips it.
 */

/* out[b,j,c] = (or +=) src[b*src_rows + idx[b*J+j], c]; src_rows 0 means one
 * shared table (then only negative indices can be detected) */
__kernel void tokens_gather(__global float *out, const ulong out_off,
                            __global const float *src, const ulong src_off,
                            __global const int *idx, const ulong idx_off,
                            const ulong src_rows, const ulong J, const ulong C,
                            const ulong total, const int accumulate)
{
    out += out_off;
    src += src_off;
    idx += idx_off;
    const ulong i = get_global_id(0);
    if (i >= total)
        return;
    const ulong bj = i / C;
    const ulong c = i - bj * C;
    const ulong b = bj / J;
    const int n = idx[bj];
    float v;
    if (n < 0 || (src_rows > 0 && (ulong)n >= src_rows))
        v = NAN;
    else
        v = src[(b * src_rows + (ulong)n) * C + c];
    out[i] = accumulate ? out[i] + v : v;
}

/* dsrc[b*src_rows + idx[b*J+j], c] += dout[b,j,c]; indices are unique within
 * a sample, so no two work-items touch the same element */
__kernel void tokens_scatter_add(__global float *dsrc, const ulong dsrc_off,
                                 __global const float *dout, const ulong dout_off,
                                 __global const int *idx, const ulong idx_off,
                                 const ulong src_rows, const ulong J,
                                 const ulong C, const ulong total)
{
    dsrc += dsrc_off;
    dout += dout_off;
    idx += idx_off;
    const ulong i = get_global_id(0);
    if (i >= total)
        return;
    const ulong bj = i / C;
    const ulong c = i - bj * C;
    const ulong b = bj / J;
    const int n = idx[bj];
    if (n < 0 || (ulong)n >= src_rows)
        return;
    dsrc[(b * src_rows + (ulong)n) * C + c] += dout[i];
}

/* dst[b*dst_stride + k] = (or +=) src[b*src_stride + k], k < n */
__kernel void tokens_copy_blocks(__global float *dst, const ulong dst_off,
                                 const ulong dst_stride,
                                 __global const float *src, const ulong src_off,
                                 const ulong src_stride, const ulong n,
                                 const ulong total, const int accumulate)
{
    dst += dst_off;
    src += src_off;
    const ulong i = get_global_id(0);
    if (i >= total)
        return;
    const ulong b = i / n;
    const ulong k = i - b * n;
    const float v = src[b * src_stride + k];
    __global float *d = dst + b * dst_stride + k;
    *d = accumulate ? *d + v : v;
}

/* out[r,c] = row[c] */
__kernel void tokens_broadcast_row(__global float *out, const ulong out_off,
                                   __global const float *row, const ulong row_off,
                                   const ulong C, const ulong total)
{
    out += out_off;
    row += row_off;
    const ulong i = get_global_id(0);
    if (i >= total)
        return;
    out[i] = row[i % C];
}

/* out[b,j,(c*P+py)*P+px] = img[b,c,gy*P+py,gx*P+px] for n = idx[b*J+j],
 * gy = n / G, gx = n % G, G = S/P: the (c, py, px) order of a flattened
 * conv weight [D,3,P,P] */
__kernel void tokens_patchify(__global float *out, const ulong out_off,
                              __global const float *img, const ulong img_off,
                              __global const int *idx, const ulong idx_off,
                              const ulong J, const ulong S, const ulong P,
                              const ulong total)
{
    out += out_off;
    img += img_off;
    idx += idx_off;
    const ulong i = get_global_id(0);
    if (i >= total)
        return;
    /* remainders are written as subtractions: one division per digit */
    const ulong patch = 3 * P * P;
    const ulong bj = i / patch;
    const ulong e = i - bj * patch;     /* (ch*P + py)*P + px */
    const ulong b = bj / J;
    const ulong row = e / P;            /* ch*P + py */
    const ulong px = e - row * P;
    const ulong ch = row / P;
    const ulong py = row - ch * P;
    const ulong G = S / P;
    const int n = idx[bj];
    if (n < 0 || (ulong)n >= G * G) {
        out[i] = NAN;
        return;
    }
    const ulong gy = (ulong)n / G;
    const ulong gx = (ulong)n - gy * G;
    out[i] = img[((b * 3 + ch) * S + gy * P + py) * S + gx * P + px];
}

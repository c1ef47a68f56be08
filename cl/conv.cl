/* conv.cl: the forward-only pieces of the DALL-E dVAE encoder around its
 * GEMMs (src/tokenizer/dalle.c): im2col for k x k 'same' convolutions, bias
 * with an optional ReLU, the 2x2 max-pool, and the argmax over the
 * vocabulary at the masked grid cells.
 *
 * Activations are planes of H x W floats. An image's channel c starts at
 * b * image_stride + c * channel_stride, so the same kernels read the
 * caller's [B,C,H,W] view and the encoder's own [C,B,H,W] activations.
 *
 * ReLU keeps NaN (v < 0 is false for NaN), as torch.relu does; the max-pool
 * and the argmax let a NaN win, as torch's max_pool2d and argmax do.
 *
 * Work per item: GPUs want neighbouring work-items on neighbouring
 * addresses, CPU drivers (PoCL) want each work-item to run a contiguous
 * loop the compiler vectorizes (5-15x faster there, measured). So im2col
 * has two kernels and the element-wise kernels take `seg`, the number of
 * contiguous elements one work-item covers (1 on GPUs). */

/* col[(c*k + ky)*k + kx, j*H*W + y*W + x] = act(x[b0+j, c, y+ky-pad, x+kx-pad])
 * with zeros outside the image (pad = k/2), for the n_img images of the
 * chunk; act is ReLU when relu != 0 (ReLU(0) = 0, so padding stays zero).
 * x is already offset to the chunk's first image. One work-item per
 * (pixel of the chunk, channel): dimension 0 runs over n_img*H*W, so
 * neighbouring work-items write neighbouring columns. */
__kernel void conv_im2col(__global float *col, const ulong col_off,
                          __global const float *x, const ulong x_off,
                          const int C, const int H, const int W, const int k,
                          const ulong image_stride, const ulong channel_stride,
                          const int n_img, const int relu)
{
    col += col_off;
    x += x_off;
    const ulong hw = (ulong)H * (ulong)W;
    const ulong cols = (ulong)n_img * hw;
    const ulong p = get_global_id(0);
    const int c = (int)get_global_id(1);
    if (p >= cols || c >= C)
        return;
    const ulong j = p / hw, yx = p % hw;
    const int y = (int)(yx / (ulong)W), xx = (int)(yx % (ulong)W);
    const int pad = k / 2;
    __global const float *plane = x + j * image_stride + (ulong)c * channel_stride;
    __global float *out = col + (ulong)c * (ulong)(k * k) * cols + p;
    for (int ky = 0; ky < k; ky++) {
        const int sy = y + ky - pad;
        for (int kx = 0; kx < k; kx++) {
            const int sx = xx + kx - pad;
            float v = 0.0f;
            if (sy >= 0 && sy < H && sx >= 0 && sx < W) {
                v = plane[(ulong)sy * (ulong)W + (ulong)sx];
                if (relu && v < 0.0f)
                    v = 0.0f;
            }
            out[(ulong)(ky * k + kx) * cols] = v;
        }
    }
}

/* The same matrix as conv_im2col, one work-item per (row of an image,
 * row of col): dimension 0 runs over n_img*H image rows, dimension 1 over
 * the C*k*k rows of col; each work-item copies one contiguous run of W
 * values (shifted by kx - pad, zeros outside). For CPU devices. */
__kernel void conv_im2col_rows(__global float *col, const ulong col_off,
                               __global const float *x, const ulong x_off,
                               const int C, const int H, const int W, const int k,
                               const ulong image_stride, const ulong channel_stride,
                               const int n_img, const int relu)
{
    col += col_off;
    x += x_off;
    const int row = (int)get_global_id(0);   /* j*H + y */
    const int r = (int)get_global_id(1);     /* (c*k + ky)*k + kx */
    if (row >= n_img * H || r >= C * k * k)
        return;
    const int j = row / H, y = row - j * H;
    const int c = r / (k * k), kk = r - c * k * k, ky = kk / k, kx = kk - ky * k;
    const int pad = k / 2, sy = y + ky - pad;
    __global float *out = col + (ulong)r * ((ulong)n_img * (ulong)H * (ulong)W) + (ulong)row * (ulong)W;
    if (sy < 0 || sy >= H) {
        for (int xx = 0; xx < W; xx++)
            out[xx] = 0.0f;
        return;
    }
    /* out[xx] = in[xx + kx - pad] for xx in [x0, x1), zero elsewhere */
    __global const float *in = x + (ulong)j * image_stride + (ulong)c * channel_stride +
                               (ulong)sy * (ulong)W;
    const int shift = kx - pad;
    const int x0 = max(0, -shift), x1 = min(W, W - shift);
    for (int xx = 0; xx < min(x0, W); xx++)
        out[xx] = 0.0f;
    if (relu) {
        for (int xx = x0; xx < x1; xx++) {
            const float v = in[xx + shift];
            out[xx] = v < 0.0f ? 0.0f : v;
        }
    } else {
        for (int xx = x0; xx < x1; xx++)
            out[xx] = in[xx + shift];
    }
    for (int xx = max(x0, x1); xx < W; xx++)
        out[xx] = 0.0f;
}

/* y[r, p] = act(y[r, p] + b[r % nb]) over R rows of P columns; no bias when
 * has_bias is 0 (b is then never read), act is ReLU when relu != 0.
 * nb < R serves [B, V, cells] logits, whose row r is channel r % V.
 * Work-item i covers columns [s*seg, (s+1)*seg) of row r, where
 * i = r * n_seg + s and n_seg = ceil(P / seg). */
__kernel void conv_bias_act(__global float *y, const ulong y_off,
                            __global const float *b, const ulong b_off,
                            const ulong P, const int R, const int nb,
                            const int has_bias, const int relu, const int seg)
{
    y += y_off;
    const ulong n_seg = (P + (ulong)seg - 1) / (ulong)seg;
    const ulong i = get_global_id(0);
    if (i >= n_seg * (ulong)R)
        return;
    const int r = (int)(i / n_seg);
    const ulong p0 = (i - (ulong)r * n_seg) * (ulong)seg, p1 = min(P, p0 + (ulong)seg);
    const float bias = has_bias ? b[b_off + (ulong)(r % nb)] : 0.0f;
    __global float *row = y + (ulong)r * P;
    if (relu) {
        for (ulong p = p0; p < p1; p++) {
            const float v = row[p] + bias;
            row[p] = v < 0.0f ? 0.0f : v;
        }
    } else {
        for (ulong p = p0; p < p1; p++)
            row[p] += bias;
    }
}

/* max(a, b) that returns NaN if either is NaN (fmax would drop it);
 * branch-free, so the pooling loop vectorizes */
float conv_max_nan(const float a, const float b)
{
    return (b > a || isnan(b)) ? b : a;
}

/* y[q, oy, ox] = max over the 2x2 window of x[q, 2oy.., 2ox..] for planes
 * q of H x W (H, W even), torch's MaxPool2d(2). Work-item i covers outputs
 * ox in [s*seg, (s+1)*seg) of output row q*H/2 + oy = i / n_seg,
 * s = i % n_seg, n_seg = ceil(W/2 / seg). */
__kernel void conv_maxpool2(__global float *y, const ulong y_off,
                            __global const float *x, const ulong x_off,
                            const ulong planes, const int H, const int W, const int seg)
{
    y += y_off;
    x += x_off;
    const int ho = H / 2, wo = W / 2, n_seg = (wo + seg - 1) / seg;
    const ulong i = get_global_id(0);
    if (i >= planes * (ulong)ho * (ulong)n_seg)
        return;
    const ulong orow = i / (ulong)n_seg;   /* q*ho + oy */
    const int ox0 = (int)(i - orow * (ulong)n_seg) * seg, ox1 = min(wo, ox0 + seg);
    __global const float *s = x + orow * 2 * (ulong)W;   /* input row 2*oy of plane q */
    __global float *out = y + orow * (ulong)wo;
    for (int ox = ox0; ox < ox1; ox++)
        out[ox] = conv_max_nan(conv_max_nan(s[2 * ox], s[2 * ox + 1]),
                               conv_max_nan(s[W + 2 * ox], s[W + 2 * ox + 1]));
}

/* labels[b*M + j] = argmax over v < V of logits[b, v, idx[b*M + j]] for
 * logits [B, V, cells]: the first maximum (a NaN counts as the maximum), or
 * -1 when the cell index is outside [0, cells). One work-item per label. */
__kernel void conv_argmax_gather(__global int *labels, const ulong labels_off,
                                 __global const float *logits, const ulong logits_off,
                                 __global const int *idx, const ulong idx_off,
                                 const int B, const int M, const int V, const int cells)
{
    labels += labels_off;
    logits += logits_off;
    idx += idx_off;
    const ulong i = get_global_id(0);
    if (i >= (ulong)B * (ulong)M)
        return;
    const ulong b = i / (ulong)M;
    const int cell = idx[i];
    if (cell < 0 || cell >= cells) {
        labels[i] = -1;
        return;
    }
    __global const float *l = logits + b * (ulong)V * (ulong)cells + (ulong)cell;
    float best = l[0];
    int arg = 0;
    for (int v = 1; v < V && !isnan(best); v++) {
        const float t = l[(ulong)v * (ulong)cells];
        if (t > best || isnan(t)) {
            best = t;
            arg = v;
        }
    }
    labels[i] = arg;
}

/* layernorm.cl: LayerNorm over the last dimension, forward and backward.
 *
 * One work-item per row: on PoCL a row loop with float16 vector loads is
 * about ten times faster than a work-group reduction, and it needs no
 * queried work-group or local-memory size. vload16 needs only element
 * alignment, so rows at any element offset are fine; the scalar loop after
 * each vector loop covers C not divisible by 16. The parameter gradients are
 * one work-item per column looping over the rows in order (deterministic).
 */

/* LAYERNORM_VEC 0 leaves only the scalar loops: same results up to summation
 * order, and usable by tools that cannot follow vector code (oclgrind's
 * --uninitialized plugin crashes on any vector value). */
#ifndef LAYERNORM_VEC
#define LAYERNORM_VEC 1
#endif

#if LAYERNORM_VEC
/* Sum of the 16 lanes, in a fixed pairwise order. */
float layernorm_hsum16(const float16 v)
{
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    const float2 c = b.lo + b.hi;
    return c.x + c.y;
}
#endif

/* sum_c xr[c] */
float layernorm_row_sum(__global const float *xr, const ulong C)
{
    ulong c = 0;
    float s = 0.0f;
#if LAYERNORM_VEC
    float16 acc = (float16)(0.0f);
    for (; c + 16 <= C; c += 16)
        acc += vload16(0, xr + c);
    s = layernorm_hsum16(acc);
#endif
    for (; c < C; c++)
        s += xr[c];
    return s;
}

/* sum_c (xr[c] - m)^2: centred, so a large mean costs no precision */
float layernorm_row_sqdev(__global const float *xr, const ulong C, const float m)
{
    ulong c = 0;
    float s = 0.0f;
#if LAYERNORM_VEC
    float16 acc = (float16)(0.0f);
    for (; c + 16 <= C; c += 16) {
        const float16 d = vload16(0, xr + c) - m;
        acc += d * d;
    }
    s = layernorm_hsum16(acc);
#endif
    for (; c < C; c++) {
        const float d = xr[c] - m;
        s += d * d;
    }
    return s;
}

/* y[t,:] = (x[t,:] - mean) * rstd * w + b; mean[t] and rstd[t] are saved for
 * the backward pass. The variance is biased, as in torch.nn.LayerNorm. */
__kernel void layernorm_forward(__global float *y, const ulong y_off,
                                __global float *mean, const ulong mean_off,
                                __global float *rstd, const ulong rstd_off,
                                __global const float *x, const ulong x_off,
                                __global const float *w, const ulong w_off,
                                __global const float *b, const ulong b_off,
                                const ulong T, const ulong C, const float eps)
{
    y += y_off;
    mean += mean_off;
    rstd += rstd_off;
    x += x_off;
    w += w_off;
    b += b_off;
    const ulong t = get_global_id(0);
    if (t >= T)
        return;
    __global const float *xr = x + t * C;
    __global float *yr = y + t * C;
    const float m = layernorm_row_sum(xr, C) / (float)C;
    const float r = 1.0f / sqrt(layernorm_row_sqdev(xr, C, m) / (float)C + eps);

    ulong c = 0;
#if LAYERNORM_VEC
    for (; c + 16 <= C; c += 16) {
        const float16 xh = (vload16(0, xr + c) - m) * r;
        vstore16(xh * vload16(0, w + c) + vload16(0, b + c), 0, yr + c);
    }
#endif
    for (; c < C; c++)
        yr[c] = (xr[c] - m) * r * w[c] + b[c];
    mean[t] = m;
    rstd[t] = r;
}

/* dx[t,:] = (or += when accumulate) rstd * (g - mean(g) - xhat * mean(g*xhat))
 * with g = w * dy and xhat = (x - mean) * rstd. */
__kernel void layernorm_backward_dx(__global float *dx, const ulong dx_off,
                                    __global const float *dy, const ulong dy_off,
                                    __global const float *x, const ulong x_off,
                                    __global const float *w, const ulong w_off,
                                    __global const float *mean, const ulong mean_off,
                                    __global const float *rstd, const ulong rstd_off,
                                    const ulong T, const ulong C,
                                    const int accumulate)
{
    dx += dx_off;
    dy += dy_off;
    x += x_off;
    w += w_off;
    mean += mean_off;
    rstd += rstd_off;
    const ulong t = get_global_id(0);
    if (t >= T)
        return;
    __global const float *xr = x + t * C;
    __global const float *dyr = dy + t * C;
    __global float *dxr = dx + t * C;
    const float m = mean[t];
    const float r = rstd[t];

    /* the two row sums: of g and of g * xhat */
    ulong c = 0;
    float sg = 0.0f, sgx = 0.0f;
#if LAYERNORM_VEC
    float16 acc_g = (float16)(0.0f), acc_gx = (float16)(0.0f);
    for (; c + 16 <= C; c += 16) {
        const float16 g = vload16(0, w + c) * vload16(0, dyr + c);
        acc_g += g;
        acc_gx += g * ((vload16(0, xr + c) - m) * r);
    }
    sg = layernorm_hsum16(acc_g);
    sgx = layernorm_hsum16(acc_gx);
#endif
    for (; c < C; c++) {
        const float g = w[c] * dyr[c];
        sg += g;
        sgx += g * ((xr[c] - m) * r);
    }
    const float mg = sg / (float)C;
    const float mgx = sgx / (float)C;

    c = 0;
#if LAYERNORM_VEC
    for (; c + 16 <= C; c += 16) {
        const float16 g = vload16(0, w + c) * vload16(0, dyr + c);
        const float16 xh = (vload16(0, xr + c) - m) * r;
        float16 d = r * (g - mg - xh * mgx);
        if (accumulate)
            d += vload16(0, dxr + c);
        vstore16(d, 0, dxr + c);
    }
#endif
    for (; c < C; c++) {
        const float g = w[c] * dyr[c];
        const float xh = (xr[c] - m) * r;
        float d = r * (g - mg - xh * mgx);
        if (accumulate)
            d += dxr[c];
        dxr[c] = d;
    }
}

/* dw[c] += sum_t dy[t,c] * xhat[t,c]; db[c] += sum_t dy[t,c]. One work-item
 * per column, rows in order: neighbouring work-items read neighbouring
 * addresses. */
__kernel void layernorm_backward_dwdb(__global float *dw, const ulong dw_off,
                                      __global float *db, const ulong db_off,
                                      __global const float *dy, const ulong dy_off,
                                      __global const float *x, const ulong x_off,
                                      __global const float *mean, const ulong mean_off,
                                      __global const float *rstd, const ulong rstd_off,
                                      const ulong T, const ulong C)
{
    dw += dw_off;
    db += db_off;
    dy += dy_off;
    x += x_off;
    mean += mean_off;
    rstd += rstd_off;
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    float sw = 0.0f, sb = 0.0f;
    for (ulong t = 0; t < T; t++) {
        const float g = dy[t * C + c];
        sw += g * ((x[t * C + c] - mean[t]) * rstd[t]);
        sb += g;
    }
    dw[c] += sw;
    db[c] += sb;
}

/* ---- one work-group per row (GPUs) ----
 * Neighbouring work-items read neighbouring elements of the row (coalesced)
 * and the row sums are tree reductions in local memory (cl/group.cl). The
 * launch is exactly T groups, so every work-item reaches every barrier. */

__kernel void layernorm_forward_wg(__global float *y, const ulong y_off,
                                   __global float *mean, const ulong mean_off,
                                   __global float *rstd, const ulong rstd_off,
                                   __global const float *x, const ulong x_off,
                                   __global const float *w, const ulong w_off,
                                   __global const float *b, const ulong b_off,
                                   const ulong T, const ulong C, const float eps,
                                   __local float *scratch)
{
    const ulong t = get_group_id(0);
    const uint lid = get_local_id(0), L = get_local_size(0);
    __global const float *xr = x + x_off + t * C;
    __global float *yr = y + y_off + t * C;
    w += w_off;
    b += b_off;
    float s = 0.0f;
    for (ulong c = lid; c < C; c += L)
        s += xr[c];
    const float m = group_sum(s, scratch) / (float)C;
    float q = 0.0f;
    for (ulong c = lid; c < C; c += L) {
        const float d = xr[c] - m;
        q += d * d;
    }
    const float r = 1.0f / sqrt(group_sum(q, scratch) / (float)C + eps);
    for (ulong c = lid; c < C; c += L)
        yr[c] = (xr[c] - m) * r * w[c] + b[c];
    if (lid == 0) {
        mean[mean_off + t] = m;
        rstd[rstd_off + t] = r;
    }
}

__kernel void layernorm_backward_dx_wg(__global float *dx, const ulong dx_off,
                                       __global const float *dy, const ulong dy_off,
                                       __global const float *x, const ulong x_off,
                                       __global const float *w, const ulong w_off,
                                       __global const float *mean, const ulong mean_off,
                                       __global const float *rstd, const ulong rstd_off,
                                       const ulong T, const ulong C, const int accumulate,
                                       __local float *scratch)
{
    const ulong t = get_group_id(0);
    const uint lid = get_local_id(0), L = get_local_size(0);
    __global const float *xr = x + x_off + t * C;
    __global const float *dyr = dy + dy_off + t * C;
    __global float *dxr = dx + dx_off + t * C;
    w += w_off;
    const float m = mean[mean_off + t], r = rstd[rstd_off + t];
    float sg = 0.0f, sgx = 0.0f;
    for (ulong c = lid; c < C; c += L) {
        const float g = w[c] * dyr[c];
        sg += g;
        sgx += g * ((xr[c] - m) * r);
    }
    const float mg = group_sum(sg, scratch) / (float)C;
    const float mgx = group_sum(sgx, scratch) / (float)C;
    for (ulong c = lid; c < C; c += L) {
        const float g = w[c] * dyr[c];
        const float xh = (xr[c] - m) * r;
        float d = r * (g - mg - xh * mgx);
        if (accumulate)
            d += dxr[c];
        dxr[c] = d;
    }
}

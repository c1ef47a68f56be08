/* mha.cl: the fused attention core (src/ops/mha.c). q, k, v, o and their
 * gradients are in the token layout: row b*N + n of a tensor ld floats
 * wide, head h in columns h*dh .. h*dh+dh-1. One work-item per query row
 * (forward, dq) or key row (dk, dv) of one (sample, head); each walks the
 * other side's rows once. The forward keeps an online softmax (running
 * maximum m and sum l, the accumulator rescaled when m grows) and saves
 * lse = m + log(l) per query row, from which backward recomputes each
 * probability p_ij = exp(scale q_i.k_j - lse_i); no [Nq,Nk] matrix exists. */

/* the largest head width the private accumulators hold; the host falls
 * back to the GEMM core above it. Set by the host (src/runtime/kernels.h). */
#ifndef MHA_MAX_DH
#error "MHA_MAX_DH: build with -DMHA_MAX_DH (src/runtime/kernels.h)"
#endif

__kernel void mha_fused_forward(__global float *o, const ulong o_off, const ulong ldo,
                                __global float *lse, const ulong lse_off,
                                __global const float *q, const ulong q_off, const ulong ldq,
                                __global const float *k, const ulong k_off, const ulong ldk,
                                __global const float *v, const ulong v_off, const ulong ldv,
                                const float scale, const ulong B, const ulong H,
                                const ulong Nq, const ulong Nk, const ulong dh)
{
    const ulong gid = get_global_id(0);
    if (gid >= B * H * Nq)
        return;
    const ulong bh = gid / Nq, i = gid - bh * Nq;
    const ulong b = bh / H, h = bh - b * H;
    __global const float *qi = q + q_off + (b * Nq + i) * ldq + h * dh;
    __global const float *kb = k + k_off + b * Nk * ldk + h * dh;
    __global const float *vb = v + v_off + b * Nk * ldv + h * dh;
    float qs[MHA_MAX_DH], acc[MHA_MAX_DH];
    for (ulong d = 0; d < dh; d++) {
        qs[d] = scale * qi[d];
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (ulong j = 0; j < Nk; j++) {
        __global const float *kj = kb + j * ldk, *vj = vb + j * ldv;
        float s = 0.0f;
        for (ulong d = 0; d < dh; d++)
            s += qs[d] * kj[d];
        if (s > m) { /* a new maximum: rescale what was summed under the old one */
            const float c = exp(m - s);
            l *= c;
            for (ulong d = 0; d < dh; d++)
                acc[d] *= c;
            m = s;
        }
        const float p = exp(s - m);
        l += p;
        for (ulong d = 0; d < dh; d++)
            acc[d] += p * vj[d];
    }
    const float inv = 1.0f / l;
    __global float *oi = o + o_off + (b * Nq + i) * ldo + h * dh;
    for (ulong d = 0; d < dh; d++)
        oi[d] = acc[d] * inv;
    lse[lse_off + gid] = m + log(l);
}

/* Per query row i: delta_i = dout_i . o_i (saved for the dk/dv kernel,
 * which runs after this one) and
 *     dq_i = scale * sum_j p_ij (dout_i . v_j - delta_i) k_j. */
__kernel void mha_fused_backward_dq(__global float *dq, const ulong dq_off, const ulong lddq,
                                    __global float *delta, const ulong delta_off,
                                    __global const float *dout, const ulong dout_off,
                                    const ulong lddo, __global const float *o, const ulong o_off,
                                    const ulong ldo, __global const float *lse,
                                    const ulong lse_off, __global const float *q,
                                    const ulong q_off, const ulong ldq, __global const float *k,
                                    const ulong k_off, const ulong ldk, __global const float *v,
                                    const ulong v_off, const ulong ldv, const float scale,
                                    const ulong B, const ulong H, const ulong Nq, const ulong Nk,
                                    const ulong dh)
{
    const ulong gid = get_global_id(0);
    if (gid >= B * H * Nq)
        return;
    const ulong bh = gid / Nq, i = gid - bh * Nq;
    const ulong b = bh / H, h = bh - b * H;
    const ulong row = b * Nq + i;
    __global const float *qi = q + q_off + row * ldq + h * dh;
    __global const float *gi = dout + dout_off + row * lddo + h * dh;
    __global const float *oi = o + o_off + row * ldo + h * dh;
    __global const float *kb = k + k_off + b * Nk * ldk + h * dh;
    __global const float *vb = v + v_off + b * Nk * ldv + h * dh;
    float qs[MHA_MAX_DH], g[MHA_MAX_DH], acc[MHA_MAX_DH];
    float D = 0.0f;
    for (ulong d = 0; d < dh; d++) {
        qs[d] = scale * qi[d];
        g[d] = gi[d];
        acc[d] = 0.0f;
        D += g[d] * oi[d];
    }
    delta[delta_off + gid] = D;
    const float L = lse[lse_off + gid];
    for (ulong j = 0; j < Nk; j++) {
        __global const float *kj = kb + j * ldk, *vj = vb + j * ldv;
        float s = 0.0f, dp = 0.0f;
        for (ulong d = 0; d < dh; d++) {
            s += qs[d] * kj[d];
            dp += g[d] * vj[d];
        }
        const float ds = exp(s - L) * (dp - D);
        for (ulong d = 0; d < dh; d++)
            acc[d] += ds * kj[d];
    }
    __global float *dqi = dq + dq_off + row * lddq + h * dh;
    for (ulong d = 0; d < dh; d++)
        dqi[d] = scale * acc[d];
}

/* Per key row j:
 *     dv_j = sum_i p_ij dout_i
 *     dk_j = scale * sum_i p_ij (dout_i . v_j - delta_i) q_i */
__kernel void mha_fused_backward_dkv(__global float *dk, const ulong dk_off, const ulong lddk,
                                     __global float *dv, const ulong dv_off, const ulong lddv,
                                     __global const float *delta, const ulong delta_off,
                                     __global const float *dout, const ulong dout_off,
                                     const ulong lddo, __global const float *lse,
                                     const ulong lse_off, __global const float *q,
                                     const ulong q_off, const ulong ldq, __global const float *k,
                                     const ulong k_off, const ulong ldk, __global const float *v,
                                     const ulong v_off, const ulong ldv, const float scale,
                                     const ulong B, const ulong H, const ulong Nq, const ulong Nk,
                                     const ulong dh)
{
    const ulong gid = get_global_id(0);
    if (gid >= B * H * Nk)
        return;
    const ulong bh = gid / Nk, j = gid - bh * Nk;
    const ulong b = bh / H, h = bh - b * H;
    const ulong row = b * Nk + j;
    __global const float *kj = k + k_off + row * ldk + h * dh;
    __global const float *vj = v + v_off + row * ldv + h * dh;
    __global const float *qb = q + q_off + b * Nq * ldq + h * dh;
    __global const float *gb = dout + dout_off + b * Nq * lddo + h * dh;
    float ks[MHA_MAX_DH], vs[MHA_MAX_DH], acck[MHA_MAX_DH], accv[MHA_MAX_DH];
    for (ulong d = 0; d < dh; d++) {
        ks[d] = scale * kj[d];
        vs[d] = vj[d];
        acck[d] = 0.0f;
        accv[d] = 0.0f;
    }
    for (ulong i = 0; i < Nq; i++) {
        __global const float *qi = qb + i * ldq, *gi = gb + i * lddo;
        float s = 0.0f, dp = 0.0f;
        for (ulong d = 0; d < dh; d++) {
            s += qi[d] * ks[d];
            dp += gi[d] * vs[d];
        }
        const float p = exp(s - lse[lse_off + bh * Nq + i]);
        const float ds = p * (dp - delta[delta_off + bh * Nq + i]);
        for (ulong d = 0; d < dh; d++) {
            accv[d] += p * gi[d];
            acck[d] += ds * qi[d];
        }
    }
    __global float *dkj = dk + dk_off + row * lddk + h * dh;
    __global float *dvj = dv + dv_off + row * lddv + h * dh;
    for (ulong d = 0; d < dh; d++) {
        dkj[d] = scale * acck[d];
        dvj[d] = accv[d];
    }
}

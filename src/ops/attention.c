/* attention.c: multi-head attention without its linears.
 *
 * heads_split / heads_merge move a column block of a linear's output
 * [B*N, stride] to the per-head layout [B,H,N,dh] and back; split also adds
 * the optional per-channel bias and multiplies by a scale, which is how the
 * model applies the [q_bias, 0, v_bias] rule and the q scaling dh^-0.5.
 * The core is batched GEMMs (one matrix per (sample, head)) around an
 * in-place row softmax.
 *
 * Gradients: dbias accumulates (+=). heads_split_backward overwrites or
 * accumulates (flag); heads_merge_backward and the core's dq, dk, dv
 * overwrite (=).
 * Kernels: cl/attention.cl, cl/softmax.cl; GEMMs: src/gemm.c.
 */
#include "ops.h"
#include "../gemm.h"

/* out[b,h,n,d] = scale * (in[(b*N+n)*in_stride + col + h*dh + d] + bias) */
static int heads_gather(cae_ctx *ctx, cae_buf out, cae_buf in,
                        size_t in_stride, size_t col, cae_buf bias,
                        float scale, size_t B, size_t N, size_t H, size_t dh)
{
    const size_t n = B * H * N * dh;
    if (n == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "attention_heads_gather");
    if (k == NULL)
        return -1;
    cl_uint a = 0;
    CAE_TRY(cae_arg_buf(k, &a, out));
    CAE_TRY(cae_arg_buf(k, &a, in));
    CAE_TRY(cae_arg_buf(k, &a, bias));
    CAE_TRY(cae_arg_int(k, &a, bias.mem != NULL));
    CAE_TRY(cae_arg_float(k, &a, scale));
    CAE_TRY(cae_arg_ulong(k, &a, in_stride));
    CAE_TRY(cae_arg_ulong(k, &a, col));
    CAE_TRY(cae_arg_ulong(k, &a, B));
    CAE_TRY(cae_arg_ulong(k, &a, N));
    CAE_TRY(cae_arg_ulong(k, &a, H));
    CAE_TRY(cae_arg_ulong(k, &a, dh));
    return cae_launch_1d(ctx, k, n);
}

/* out[(b*N+n)*out_stride + col + h*dh + d] = (or +=) scale * in[b,h,n,d] */
static int heads_scatter(cae_ctx *ctx, cae_buf out, size_t out_stride,
                         size_t col, cae_buf in, float scale, size_t B,
                         size_t N, size_t H, size_t dh, int accumulate)
{
    const size_t n = B * N * H * dh;
    if (n == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "attention_heads_scatter");
    if (k == NULL)
        return -1;
    cl_uint a = 0;
    CAE_TRY(cae_arg_buf(k, &a, out));
    CAE_TRY(cae_arg_buf(k, &a, in));
    CAE_TRY(cae_arg_float(k, &a, scale));
    CAE_TRY(cae_arg_int(k, &a, accumulate != 0));
    CAE_TRY(cae_arg_ulong(k, &a, out_stride));
    CAE_TRY(cae_arg_ulong(k, &a, col));
    CAE_TRY(cae_arg_ulong(k, &a, B));
    CAE_TRY(cae_arg_ulong(k, &a, N));
    CAE_TRY(cae_arg_ulong(k, &a, H));
    CAE_TRY(cae_arg_ulong(k, &a, dh));
    return cae_launch_1d(ctx, k, n);
}

int cae_heads_split(cae_ctx *ctx, cae_buf out /* [B,H,N,dh] */,
                    cae_buf in /* [B*N, in_stride] */, size_t in_stride,
                    size_t col, cae_buf bias /* [H*dh] */, float scale,
                    size_t B, size_t N, size_t H, size_t dh)
{
    return heads_gather(ctx, out, in, in_stride, col, bias, scale, B, N, H,
                        dh);
}

int cae_heads_split_backward(cae_ctx *ctx, cae_buf din /* [B*N, in_stride] */,
                             size_t in_stride, size_t col,
                             cae_buf dbias /* [H*dh] */,
                             cae_buf dout /* [B,H,N,dh] */, float scale,
                             size_t B, size_t N, size_t H, size_t dh,
                             int accumulate)
{
    CAE_TRY(heads_scatter(ctx, din, in_stride, col, dout, scale, B, N, H, dh,
                          accumulate));
    if (dbias.mem == NULL || H * dh == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "attention_heads_dbias");
    if (k == NULL)
        return -1;
    cl_uint a = 0;
    CAE_TRY(cae_arg_buf(k, &a, dbias));
    CAE_TRY(cae_arg_buf(k, &a, dout));
    CAE_TRY(cae_arg_float(k, &a, scale));
    CAE_TRY(cae_arg_ulong(k, &a, B));
    CAE_TRY(cae_arg_ulong(k, &a, N));
    CAE_TRY(cae_arg_ulong(k, &a, H));
    CAE_TRY(cae_arg_ulong(k, &a, dh));
    return cae_launch_1d(ctx, k, H * dh);
}

int cae_heads_merge(cae_ctx *ctx, cae_buf out /* [B*N, H*dh] */,
                    cae_buf in /* [B,H,N,dh] */, size_t B, size_t N, size_t H,
                    size_t dh)
{
    return heads_scatter(ctx, out, H * dh, 0, in, 1.0f, B, N, H, dh, 0);
}

int cae_heads_merge_backward(cae_ctx *ctx, cae_buf din /* [B,H,N,dh] */,
                             cae_buf dout /* [B*N, H*dh] */, size_t B,
                             size_t N, size_t H, size_t dh)
{
    return heads_gather(ctx, din, dout, H * dh, 0, cae_buf_null(), 1.0f, B, N,
                        H, dh);
}

int cae_attention_forward(cae_ctx *ctx, cae_buf o /* [BH,Nq,dh] */,
                          cae_buf p /* [BH,Nq,Nk] */, cae_buf q /* [BH,Nq,dh] */,
                          cae_buf k /* [BH,Nk,dh] */, cae_buf v /* [BH,Nk,dh] */,
                          size_t BH, size_t Nq, size_t Nk, size_t dh)
{
    if (BH == 0 || Nq == 0 || Nk == 0 || dh == 0)
        return 0;
    const size_t sq = Nq * dh, sk = Nk * dh, sp = Nq * Nk;
    /* scores p[Nq,Nk] = q[Nq,dh] k[Nk,dh]^T (q is already scaled) */
    CAE_TRY(cae_gemm_batched(ctx, 0, 1, Nq, Nk, dh, 1.0f, q, dh, sq, k, dh,
                             sk, 0.0f, p, Nk, sp, BH));
    CAE_TRY(cae_softmax_forward(ctx, p, p, BH * Nq, Nk));
    /* o[Nq,dh] = p[Nq,Nk] v[Nk,dh] */
    CAE_TRY(cae_gemm_batched(ctx, 0, 0, Nq, dh, Nk, 1.0f, p, Nk, sp, v, dh,
                             sk, 0.0f, o, dh, sq, BH));
    return 0;
}

int cae_attention_backward(cae_ctx *ctx, cae_buf dq /* [BH,Nq,dh] */,
                           cae_buf dk /* [BH,Nk,dh] */,
                           cae_buf dv /* [BH,Nk,dh] */,
                           cae_buf dp /* [BH,Nq,Nk] */,
                           cae_buf dout /* [BH,Nq,dh] */,
                           cae_buf p /* [BH,Nq,Nk] */,
                           cae_buf q /* [BH,Nq,dh] */,
                           cae_buf k /* [BH,Nk,dh] */,
                           cae_buf v /* [BH,Nk,dh] */, size_t BH, size_t Nq,
                           size_t Nk, size_t dh)
{
    if (BH == 0 || Nq == 0 || Nk == 0 || dh == 0)
        return 0;
    const size_t sq = Nq * dh, sk = Nk * dh, sp = Nq * Nk;
    /* dv[Nk,dh] = p[Nq,Nk]^T dout[Nq,dh] */
    CAE_TRY(cae_gemm_batched(ctx, 1, 0, Nk, dh, Nq, 1.0f, p, Nk, sp, dout, dh,
                             sq, 0.0f, dv, dh, sk, BH));
    /* dp[Nq,Nk] = dout[Nq,dh] v[Nk,dh]^T, then through the softmax */
    CAE_TRY(cae_gemm_batched(ctx, 0, 1, Nq, Nk, dh, 1.0f, dout, dh, sq, v, dh,
                             sk, 0.0f, dp, Nk, sp, BH));
    CAE_TRY(cae_softmax_backward(ctx, dp, dp, p, BH * Nq, Nk));
    /* dq[Nq,dh] = ds[Nq,Nk] k[Nk,dh] */
    CAE_TRY(cae_gemm_batched(ctx, 0, 0, Nq, dh, Nk, 1.0f, dp, Nk, sp, k, dh,
                             sk, 0.0f, dq, dh, sq, BH));
    /* dk[Nk,dh] = ds[Nq,Nk]^T q[Nq,dh] */
    CAE_TRY(cae_gemm_batched(ctx, 1, 0, Nk, dh, Nq, 1.0f, dp, Nk, sp, q, dh,
                             sq, 0.0f, dk, dh, sk, BH));
    return 0;
}

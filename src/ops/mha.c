/* mha.c: multi-head attention in the token layout (see ops.h), with two
 * cores behind one interface.
 *
 * GEMM core: for every (sample, head), addressed in place through
 * cae_gemm_batched_2d (outer: samples, inner: heads),
 *     P = softmax(scale Q K^T)   [B,H,Nq,Nk], saved
 *     O = P V
 * and backward dV = P^T dO, dP = dO V^T, dS = softmax'(dP), dQ = scale dS K,
 * dK = scale dS^T Q.
 * Fused core: cl/mha.cl, which saves lse [B,H,Nq] instead of P and uses the
 * scratch for delta_i = dO_i . O_i.
 *
 * Gradients: dq, dk, dv overwrite (=).
 */
#include "ops/ops.h"
#include "runtime/gemm.h"

#include <stdlib.h>
#include <string.h>

/* ctx->attention, once resolved */
enum { ATTENTION_BAD = -1, ATTENTION_GEMM = 1, ATTENTION_FUSED = 2 };

/* The attention core: GEMMs on CPUs (ctx->cpu_defaults: there the host
 * BLAS beats a row-per-work-item kernel), the fused kernel elsewhere (it never writes the
 * [B,H,Nq,Nk] probabilities); CAE_CL_ATTENTION=fused|gemm overrides.
 * Resolved on a context's first use and kept, so the sizes a plan asked for
 * and the launches that follow agree. -1 on another value, reported once. */
static int resolve_core(cae_ctx *ctx)
{
    const char *sel = getenv("CAE_CL_ATTENTION");
    if (ctx->attention == ATTENTION_BAD)
        return -1;
    if (ctx->attention != 0)
        return 0;
    if (!sel || !*sel)
        ctx->attention = ctx->cpu_defaults ? ATTENTION_GEMM : ATTENTION_FUSED;
    else if (strcmp(sel, "fused") == 0)
        ctx->attention = ATTENTION_FUSED;
    else if (strcmp(sel, "gemm") == 0)
        ctx->attention = ATTENTION_GEMM;
    else {
        cae_errorf("CAE_CL_ATTENTION='%s': expected 'fused' or 'gemm'", sel);
        ctx->attention = ATTENTION_BAD;
        return -1;
    }
    return 0;
}

int cae_mha_check(cae_ctx *ctx)
{
    return resolve_core(ctx);
}

int cae_mha_fused(cae_ctx *ctx)
{
    resolve_core(ctx); /* a bad choice sizes for the GEMM core; the launches fail */
    return ctx->attention == ATTENTION_FUSED;
}

void cae_mha_set_fused(cae_ctx *ctx, int fused)
{
    ctx->attention = fused ? ATTENTION_FUSED : ATTENTION_GEMM;
}

static int use_fused(cae_ctx *ctx, const cae_mha_dims *d)
{
    return cae_mha_fused(ctx) && d->dh <= CAE_MHA_MAX_DH;
}

size_t cae_mha_saved_elems(cae_ctx *ctx, const cae_mha_dims *d)
{
    return use_fused(ctx, d) ? d->B * d->H * d->Nq : d->B * d->H * d->Nq * d->Nk;
}

size_t cae_mha_scratch_elems(cae_ctx *ctx, const cae_mha_dims *d)
{
    return cae_mha_saved_elems(ctx, d);
}

static int empty(const cae_mha_dims *d)
{
    return d->B == 0 || d->H == 0 || d->Nq == 0 || d->Nk == 0 || d->dh == 0;
}

static cae_gemm_batch batch(size_t count, size_t sa, size_t sb, size_t sc)
{
    cae_gemm_batch g = {count, sa, sb, sc};
    return g;
}

/* ------------------------------------------------------------ GEMM core */

static int gemm_forward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok o, cae_buf p, cae_tok q,
                        cae_tok k, cae_tok v)
{
    const size_t H = d->H, Nq = d->Nq, Nk = d->Nk, dh = d->dh, sp = Nq * Nk;
    /* P[b,h] = scale Q[b,h] K[b,h]^T */
    CAE_TRY(cae_gemm_batched_2d(ctx, 0, 1, Nq, Nk, dh, d->scale, q.buf, q.ld, k.buf, k.ld, 0.0f, p,
                                Nk, batch(d->B, Nq * q.ld, Nk * k.ld, H * sp),
                                batch(H, dh, dh, sp)));
    CAE_TRY(cae_softmax_forward(ctx, p, p, d->B * H * Nq, Nk));
    /* O[b,h] = P[b,h] V[b,h] */
    return cae_gemm_batched_2d(ctx, 0, 0, Nq, dh, Nk, 1.0f, p, Nk, v.buf, v.ld, 0.0f, o.buf, o.ld,
                               batch(d->B, H * sp, Nk * v.ld, Nq * o.ld), batch(H, sp, dh, dh));
}

static int gemm_backward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok dq, cae_tok dk, cae_tok dv,
                         cae_buf dp, cae_tok dout, cae_buf p, cae_tok q, cae_tok k, cae_tok v)
{
    const size_t H = d->H, Nq = d->Nq, Nk = d->Nk, dh = d->dh, sp = Nq * Nk;
    /* dV = P^T dO */
    CAE_TRY(cae_gemm_batched_2d(ctx, 1, 0, Nk, dh, Nq, 1.0f, p, Nk, dout.buf, dout.ld, 0.0f,
                                dv.buf, dv.ld, batch(d->B, H * sp, Nq * dout.ld, Nk * dv.ld),
                                batch(H, sp, dh, dh)));
    /* dP = dO V^T, then through the softmax (in place) */
    CAE_TRY(cae_gemm_batched_2d(ctx, 0, 1, Nq, Nk, dh, 1.0f, dout.buf, dout.ld, v.buf, v.ld, 0.0f,
                                dp, Nk, batch(d->B, Nq * dout.ld, Nk * v.ld, H * sp),
                                batch(H, dh, dh, sp)));
    CAE_TRY(cae_softmax_backward(ctx, dp, dp, p, d->B * H * Nq, Nk));
    /* dQ = scale dS K */
    CAE_TRY(cae_gemm_batched_2d(ctx, 0, 0, Nq, dh, Nk, d->scale, dp, Nk, k.buf, k.ld, 0.0f, dq.buf,
                                dq.ld, batch(d->B, H * sp, Nk * k.ld, Nq * dq.ld),
                                batch(H, sp, dh, dh)));
    /* dK = scale dS^T Q */
    return cae_gemm_batched_2d(ctx, 1, 0, Nk, dh, Nq, d->scale, dp, Nk, q.buf, q.ld, 0.0f, dk.buf,
                               dk.ld, batch(d->B, H * sp, Nq * q.ld, Nk * dk.ld),
                               batch(H, sp, dh, dh));
}

/* ----------------------------------------------------------- fused core */

/* A token-layout tensor as a kernel takes it: the buffer, then ld */
#define TOK(t) CAE_BUF((t).buf), CAE_ULONG((t).ld)
/* the shape arguments every fused kernel ends with */
#define DIMS(d) CAE_FLOAT((d)->scale), CAE_ULONG((d)->B), CAE_ULONG((d)->H), CAE_ULONG((d)->Nq), \
                CAE_ULONG((d)->Nk), CAE_ULONG((d)->dh)

static int fused_forward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok o, cae_buf lse, cae_tok q,
                         cae_tok k, cae_tok v)
{
    return cae_run_1d(ctx, CAE_K_mha_fused_forward, d->B * d->H * d->Nq,
                      CAE_ARGS(TOK(o), CAE_BUF(lse), TOK(q), TOK(k), TOK(v), DIMS(d)));
}

static int fused_backward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok dq, cae_tok dk, cae_tok dv,
                          cae_buf delta, cae_tok dout, cae_tok o, cae_buf lse, cae_tok q,
                          cae_tok k, cae_tok v)
{
    CAE_TRY(cae_run_1d(ctx, CAE_K_mha_fused_backward_dq, d->B * d->H * d->Nq,
                       CAE_ARGS(TOK(dq), CAE_BUF(delta), TOK(dout), TOK(o), CAE_BUF(lse), TOK(q),
                                TOK(k), TOK(v), DIMS(d))));
    /* in-order queue: delta is written before this kernel reads it */
    return cae_run_1d(ctx, CAE_K_mha_fused_backward_dkv, d->B * d->H * d->Nk,
                      CAE_ARGS(TOK(dk), TOK(dv), CAE_BUF(delta), TOK(dout), CAE_BUF(lse), TOK(q),
                               TOK(k), TOK(v), DIMS(d)));
}

/* ------------------------------------------------------------ interface */

int cae_mha_forward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok o, cae_buf saved, cae_tok q,
                    cae_tok k, cae_tok v)
{
    if (empty(d))
        return 0;
    CAE_TRY(resolve_core(ctx));
    if (use_fused(ctx, d))
        return fused_forward(ctx, d, o, saved, q, k, v);
    return gemm_forward(ctx, d, o, saved, q, k, v);
}

int cae_mha_backward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok dq, cae_tok dk, cae_tok dv,
                     cae_buf scratch, cae_tok dout, cae_tok o, cae_buf saved, cae_tok q,
                     cae_tok k, cae_tok v)
{
    if (empty(d))
        return 0;
    CAE_TRY(resolve_core(ctx));
    if (use_fused(ctx, d))
        return fused_backward(ctx, d, dq, dk, dv, scratch, dout, o, saved, q, k, v);
    return gemm_backward(ctx, d, dq, dk, dv, scratch, dout, saved, q, k, v);
}

/* ops.h: every op of the CAE step, forward above backward.
 *
 * Conventions (all ops):
 * - Row-major float32 tensors passed as cae_buf (cl_mem, element offset);
 *   the shape is in the comment beside each argument. Integer tensors
 *   (labels, indices) are cl_int.
 * - Parameter gradients accumulate (+=). Activation gradients overwrite (=)
 *   unless the op takes a cae_accum and is given CAE_ACCUMULATE (+=), which
 *   the model uses on the residual stream and where one tensor feeds several
 *   consumers.
 * - An absent optional buffer is cae_buf_null().
 * - Nothing here waits on the queue.
 * Each op family lives in src/ops/<family>.c with its kernels in
 * cl/<family>.cl.
 */
#ifndef CAE_OPS_H
#define CAE_OPS_H

#include "runtime/runtime.h"

#define CAE_LN_EPS 1e-6f

/* What an op taking it does to its output: = or += */
typedef enum { CAE_OVERWRITE = 0, CAE_ACCUMULATE = 1 } cae_accum;

/* ---- layernorm.c: y = (x - mean) * rstd * w + b over the last dim ---- */
int cae_layernorm_forward(cae_ctx *ctx, cae_buf y /* [T,C] */,
                          cae_buf mean /* [T] */, cae_buf rstd /* [T] */,
                          cae_buf x /* [T,C] */, cae_buf w /* [C] */,
                          cae_buf b /* [C] */, size_t T, size_t C);
/* dx = (or += with CAE_ACCUMULATE) d/dx; dw += sum_t dy*xhat; db += sum_t dy */
int cae_layernorm_backward(cae_ctx *ctx, cae_buf dx /* [T,C] */,
                           cae_buf dw /* [C] */, cae_buf db /* [C] */,
                           cae_buf dy /* [T,C] */, cae_buf x /* [T,C] */,
                           cae_buf w /* [C] */, cae_buf mean /* [T] */,
                           cae_buf rstd /* [T] */, size_t T, size_t C,
                           cae_accum accumulate);

/* ---- gelu.c: exact GELU, y = x * 0.5 * (1 + erf(x / sqrt(2))) ---- */
int cae_gelu_forward(cae_ctx *ctx, cae_buf y /* [n] */, cae_buf x /* [n] */,
                     size_t n);
int cae_gelu_backward(cae_ctx *ctx, cae_buf dx /* [n] = */,
                      cae_buf dy /* [n] */, cae_buf x /* [n] */, size_t n);
/* bias and activation of an MLP's first linear in one pass: x += b (per
 * column; x keeps the pre-activation), y = GELU(x). b absent: GELU only.
 * y must not alias x. */
int cae_gelu_bias_forward(cae_ctx *ctx, cae_buf y /* [T,C] */, cae_buf x /* [T,C] */,
                          cae_buf b /* [C] */, size_t T, size_t C);

/* ---- residual.c: layer scale, drop path and the residual stream ---- */
/* x[t,c] += g[c] * s[t / rows_per_sample] * y[t,c]; g absent: 1 (no layer
 * scale); s absent: 1 (no drop path; else 0 or 1/(1-p) per sample). */
int cae_residual_forward(cae_ctx *ctx, cae_buf x /* [T,C] */,
                         cae_buf y /* [T,C] */, cae_buf g /* [C] */,
                         cae_buf s /* [T/rows_per_sample] */, size_t T,
                         size_t C, size_t rows_per_sample);
/* dy = g * s * dx (overwrite); dg += sum_t s * dx * y (when g present) */
int cae_residual_backward(cae_ctx *ctx, cae_buf dy /* [T,C] */,
                          cae_buf dg /* [C] */, cae_buf dx /* [T,C] */,
                          cae_buf y /* [T,C] */, cae_buf g /* [C] */,
                          cae_buf s /* [T/rows_per_sample] */, size_t T,
                          size_t C, size_t rows_per_sample);
/* out = a + b (out may alias a or b) */
int cae_add(cae_ctx *ctx, cae_buf out /* [n] */, cae_buf a /* [n] */,
            cae_buf b /* [n] */, size_t n);

/* ---- linear.c: y = x W^T + b through the GEMM wrapper ---- */
int cae_linear_forward(cae_ctx *ctx, cae_buf y /* [T,O] */,
                       cae_buf x /* [T,I] */, cae_buf w /* [O,I] */,
                       cae_buf b /* [O] or absent */, size_t T, size_t I,
                       size_t O);
/* dx = (or +=) dy W, skipped when dx is absent; dw += dy^T x;
 * db += sum_t dy when db is present */
int cae_linear_backward(cae_ctx *ctx, cae_buf dx /* [T,I] */,
                        cae_buf dw /* [O,I] */, cae_buf db /* [O] */,
                        cae_buf dy /* [T,O] */, cae_buf x /* [T,I] */,
                        cae_buf w /* [O,I] */, size_t T, size_t I, size_t O,
                        cae_accum accumulate);
/* out[c] += sum_t in[t,c] (deterministic order) */
int cae_colsum_add(cae_ctx *ctx, cae_buf out /* [C] */, cae_buf in /* [T,C] */,
                   size_t T, size_t C);
/* y[t,c] += b[c] */
int cae_bias_add(cae_ctx *ctx, cae_buf y /* [T,C] */, cae_buf b /* [C] */,
                 size_t T, size_t C);
/* the same on the first C columns of rows ld apart (a column block of a
 * wider tensor: start y at the block) */
int cae_bias_add_ld(cae_ctx *ctx, cae_buf y /* [T,ld] */, size_t ld, cae_buf b /* [C] */,
                    size_t T, size_t C);
/* out[c] += sum_t in[t*ld + c] for c < C */
int cae_colsum_add_ld(cae_ctx *ctx, cae_buf out /* [C] */, cae_buf in /* [T,ld] */, size_t ld,
                      size_t T, size_t C);

/* ---- mha.c: multi-head attention in the token layout ----
 * Tensors stay as the linears write them: row b*N + n, head h in columns
 * h*dh .. h*dh+dh-1 of a row ld elements wide (so q, k and v can be column
 * blocks of one fused qkv output, and o is the proj input). For each sample
 * b and head h:  o_i = sum_j softmax_j(scale * q_i . k_j) v_j.
 * Two cores compute it: GEMMs around a row softmax that keeps the
 * probabilities (CPUs: the GEMMs run on the host BLAS), or one fused kernel
 * with an online softmax that keeps only each row's log-sum-exp and
 * recomputes the probabilities in backward (GPUs: no [B,H,Nq,Nk] tensor
 * is written or read). CAE_CL_ATTENTION=fused|gemm overrides the choice,
 * made on a context's first use of attention and kept. */
typedef struct {
    cae_buf buf; /* element (row r, column c) at buf + r*ld + c */
    size_t ld;
} cae_tok;
static inline cae_tok cae_tok_of(cae_buf buf, size_t ld)
{
    cae_tok t = {buf, ld};
    return t;
}
typedef struct {
    size_t B, H, Nq, Nk, dh;
    float scale;
} cae_mha_dims;
/* Resolve this context's attention core (CAE_CL_ATTENTION, else GEMMs
 * where the CPU defaults apply and fused elsewhere); -1 (reported once) on a bad value. The models
 * call it before they plan, so a bad value stops them before any work. */
int cae_mha_check(cae_ctx *ctx);
/* 1 when this context runs the fused core */
int cae_mha_fused(cae_ctx *ctx);
/* Run the fused core (1) or the GEMM core (0) from now on (tests). */
void cae_mha_set_fused(cae_ctx *ctx, int fused);
/* floats the forward saves for backward (probabilities or log-sum-exps) and
 * the backward's scratch */
size_t cae_mha_saved_elems(cae_ctx *ctx, const cae_mha_dims *d);
size_t cae_mha_scratch_elems(cae_ctx *ctx, const cae_mha_dims *d);
int cae_mha_forward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok o /* [B*Nq, H*dh] */,
                    cae_buf saved, cae_tok q /* [B*Nq] */, cae_tok k /* [B*Nk] */,
                    cae_tok v /* [B*Nk] */);
/* dq, dk, dv overwritten (=); o is the forward's output */
int cae_mha_backward(cae_ctx *ctx, const cae_mha_dims *d, cae_tok dq, cae_tok dk, cae_tok dv,
                     cae_buf scratch, cae_tok dout, cae_tok o, cae_buf saved, cae_tok q,
                     cae_tok k, cae_tok v);
/* ---- softmax.c: row softmax, used by attention ---- */
int cae_softmax_forward(cae_ctx *ctx, cae_buf y /* [R,K] */,
                        cae_buf x /* [R,K] */, size_t R, size_t K);
/* dx = y * (dy - sum_k dy*y); dx may alias dy */
int cae_softmax_backward(cae_ctx *ctx, cae_buf dx /* [R,K] */,
                         cae_buf dy /* [R,K] */, cae_buf y /* [R,K] */,
                         size_t R, size_t K);

/* ---- loss.c: cross-entropy (+ top-1) and mean squared error ---- */
/* Per row r: row_loss[r] = logsumexp(logits[r]) - logits[r, label[r]];
 * row_correct[r] = 1 if argmax (first maximum) == label else 0;
 * dlogits[r] = grad_scale * (softmax(logits[r]) - onehot(label[r])).
 * A label outside [0,K) makes row_loss NaN. */
int cae_cross_entropy(cae_ctx *ctx, cae_buf dlogits /* [R,K] */,
                      cae_buf row_loss /* [R] */, cae_buf row_correct /* [R] */,
                      cae_buf logits /* [R,K] */, cae_buf labels /* int [R] */,
                      float grad_scale, size_t R, size_t K);
/* sq[i] = (pred[i] - target[i])^2; dpred[i] = grad_scale * 2 * (pred[i] - target[i]) */
int cae_mse(cae_ctx *ctx, cae_buf dpred /* [n] */, cae_buf sq /* [n] */,
            cae_buf pred /* [n] */, cae_buf target /* [n] */, float grad_scale,
            size_t n);

/* ---- reduce.c: deterministic sums into one float ---- */
size_t cae_reduce_scratch_elems(size_t n);
/* out[0] = sum_i in[i]; scratch holds cae_reduce_scratch_elems(n) floats */
int cae_sum(cae_ctx *ctx, cae_buf out /* [1] */, cae_buf in /* [n] */, size_t n,
            cae_buf scratch);
/* out[0] = sum_i in[i]^2 */
int cae_sum_squares(cae_ctx *ctx, cae_buf out /* [1] */, cae_buf in /* [n] */,
                    size_t n, cae_buf scratch);
/* x[i] *= alpha (gradient clipping) */
int cae_scale(cae_ctx *ctx, cae_buf x /* [n] */, float alpha, size_t n);

/* ---- tokens.c: moving token rows around ---- */
/* out[b,j,:] = (or +=) src[b*src_rows + idx[b*J+j], :]; src_rows 0 means
 * one table shared by every sample. */
int cae_gather_rows(cae_ctx *ctx, cae_buf out /* [B,J,C] */, cae_buf src,
                    size_t src_rows, cae_buf idx /* int [B,J] */, size_t B,
                    size_t J, size_t C, cae_accum accumulate);
/* dsrc[b*src_rows + idx[b*J+j], :] += dout[b,j,:]; indices are unique
 * within a sample and src_rows > 0, so no two work-items collide. */
int cae_scatter_rows_add(cae_ctx *ctx, cae_buf dsrc, size_t src_rows,
                         cae_buf dout /* [B,J,C] */, cae_buf idx /* int [B,J] */,
                         size_t B, size_t J, size_t C);
/* dst[b*dst_stride + i] = (or +=) src[b*src_stride + i] for i < n */
int cae_copy_blocks(cae_ctx *ctx, cae_buf dst, size_t dst_stride, cae_buf src,
                    size_t src_stride, size_t B, size_t n, cae_accum accumulate);
/* out[r,:] = row[:] for every r < R */
int cae_broadcast_row(cae_ctx *ctx, cae_buf out /* [R,C] */,
                      cae_buf row /* [C] */, size_t R, size_t C);
/* out[b,j,(c*P+py)*P+px] = img[b,c,gy*P+py,gx*P+px] for patch
 * n = idx[b*J+j], gy = n / (S/P), gx = n % (S/P); 3 channels. */
int cae_patchify(cae_ctx *ctx, cae_buf out /* [B,J,3*P*P] */,
                 cae_buf img /* [B,3,S,S] */, cae_buf idx /* int [B,J] */,
                 size_t B, size_t J, size_t S, size_t P);

/* ---- posembed.c: the fixed 2-D sin-cos table (host side, in double) ---- */
/* table [(G*G + 1), C]: row 0 (cls) zeros; patch n = r*G + c gets
 * [sin(r w), cos(r w), sin(c w), cos(c w)], w_j = 1/10000^(j/(C/4)).
 * Returns -1 (reported) when C is not a multiple of 4. */
int cae_sincos_table(float *table, size_t G, size_t C);

#endif

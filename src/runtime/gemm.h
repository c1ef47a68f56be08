/* gemm.h: the one matrix-multiply wrapper, with two back ends.
 *
 * Row-major C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T.
 * CLBlast runs it on the device; the host back end enqueues the host CBLAS
 * as a native kernel in the same in-order queue (CPU devices that run native
 * kernels, such as PoCL), so no host round trip or queue wait is needed.
 * This module owns the choice of back end (cae_gemm_backend says which one
 * runs) and CLBlast's temporary buffer, both kept per context.
 */
#ifndef CAE_GEMM_H
#define CAE_GEMM_H

#include "runtime/ctx.h"

typedef enum { CAE_GEMM_AUTO, CAE_GEMM_CLBLAST, CAE_GEMM_HOST } cae_gemm_choice;

/* Parse "auto", "clblast" or "host"; -1 on anything else. */
int cae_gemm_choice_parse(const char *text, cae_gemm_choice *out);

/* A [M,K] (or [K,M] when trans_a), B [K,N] (or [N,K] when trans_b), C [M,N];
 * lda/ldb/ldc are row strides in elements. */
int cae_gemm(cae_ctx *ctx, int trans_a, int trans_b, size_t m, size_t n,
             size_t k, float alpha, cae_buf a, size_t lda, cae_buf b,
             size_t ldb, float beta, cae_buf c, size_t ldc);

/* batch independent GEMMs; matrix i of X starts stride_x elements after
 * matrix i-1. */
int cae_gemm_batched(cae_ctx *ctx, int trans_a, int trans_b, size_t m,
                     size_t n, size_t k, float alpha, cae_buf a, size_t lda,
                     size_t stride_a, cae_buf b, size_t ldb, size_t stride_b,
                     float beta, cae_buf c, size_t ldc, size_t stride_c,
                     size_t batch);

/* A grid of independent GEMMs: matrix (o, i) of X starts
 * o * outer.stride_x + i * inner.stride_x elements in (o < outer.count,
 * i < inner.count). Attention uses it to address each (sample, head) in the
 * token layout [B*N, ld] directly, without moving heads into their own
 * tensors. */
typedef struct {
    size_t count, stride_a, stride_b, stride_c;
} cae_gemm_batch;
int cae_gemm_batched_2d(cae_ctx *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                        float alpha, cae_buf a, size_t lda, cae_buf b, size_t ldb, float beta,
                        cae_buf c, size_t ldc, cae_gemm_batch outer, cae_gemm_batch inner);

/* What choice means on ctx's device (cae_device_open has filled it in):
 * CAE_GEMM_AUTO is the host BLAS where the CPU defaults apply and native
 * kernels run, else CLBlast; the others stand for themselves. */
cae_gemm_choice cae_gemm_resolve(const cae_ctx *ctx, cae_gemm_choice choice);
/* Resolve CAE_GEMM_AUTO for this device and prepare the chosen back end
 * (again on a prepared context: switch to it). */
int cae_gemm_init(cae_ctx *ctx, cae_gemm_choice choice);
/* CLBlast with its own database's parameters: nothing overridden, neither
 * the tuning file's sets nor the CPU defaults (cae-cl-tune's reference;
 * CLBlast cannot undo an override, so only before any on this device). */
int cae_gemm_init_database(cae_ctx *ctx);
void cae_gemm_free(cae_ctx *ctx);
/* The back end that runs: CAE_GEMM_CLBLAST or CAE_GEMM_HOST (CAE_GEMM_AUTO
 * before cae_gemm_init). */
cae_gemm_choice cae_gemm_backend(const cae_ctx *ctx);
/* CLBlastOverrideParameters for one kernel's parameter set (single
 * precision); 0, or -1 reported. */
int cae_gemm_override(cl_device_id device, const char *kernel, const char *const *names,
                      const size_t *values, size_t n);
/* The fixed Xgemm set CPU devices use without a tuning file. */
extern const size_t cae_gemm_cpu_xgemm[CAE_TUNE_XGEMM_N];
/* At most n BLAS threads for the host back end (ranks sharing a CPU). */
void cae_gemm_limit_host_threads(int n);

#endif

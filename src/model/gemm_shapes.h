/* gemm_shapes.h: the distinct GEMMs of one training step.
 *
 * Mirrors what the step enqueues (src/model/blocks.c, src/model/encoder.c,
 * src/model/cae_step.c, src/ops/linear.c, src/ops/mha.c): every linear
 * layer's forward (0,1,T,O,I), input gradient (0,0,T,I,O) and weight
 * gradient (1,0,O,I,T), the attention products per head as strided batches. The alignment pass
 * is forward only; the patch embedding needs no input gradient; the
 * tokenizer's are added by cae_gemm_shapes_tokenizer. cae_gemm_shapes's
 * FLOPs agree with flops.c's GEMM share.
 */
#ifndef CAE_GEMM_SHAPES_H
#define CAE_GEMM_SHAPES_H

#include "model/cae_config.h"
#include "runtime/runtime.h"

#include <stddef.h>

typedef struct {
    size_t m, n, k, batch; /* batch 1: a plain GEMM */
    int trans_a, trans_b;
    size_t count;          /* times per step */
    const char *group;     /* "linear fwd", "linear dx", "linear dW", "attention",
                            * "tokenizer" */
} cae_gemm_shape;

/* Fills out (up to cap) with the step's distinct shapes, merged, largest
 * FLOP share first; returns how many there are (may exceed cap). */
size_t cae_gemm_shapes(const cae_config *cfg, size_t B, cae_gemm_shape *out, size_t cap);

/* Adds the DALL-E tokenizer's GEMMs of one step (its weights at path,
 * B images of image_size, a device allocating at most max_alloc bytes at
 * once: cae_dalle_gemms) to the *n shapes in out, merged, group
 * "tokenizer", and sorts them again; *n becomes the new count (may exceed
 * cap). 0, or -1 reported. */
int cae_gemm_shapes_tokenizer(const char *path, size_t B, int image_size, cl_ulong max_alloc,
                              cae_gemm_shape *out, size_t cap, size_t *n);

/* 2*m*n*k*batch*count */
double cae_gemm_shape_flops(const cae_gemm_shape *s);

#endif

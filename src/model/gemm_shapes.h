/* gemm_shapes.h: the distinct GEMMs of one training step.
 *
 * Mirrors what the step enqueues (src/model/blocks.c, src/model/encoder.c,
 * src/model/cae_step.c, src/ops/linear.c, src/ops/mha.c): every linear
 * layer's forward (0,1,T,O,I), input gradient (0,0,T,I,O) and weight
 * gradient (1,0,O,I,T), the attention products per head as strided batches. The alignment pass
 * is forward only; the patch embedding needs no input gradient; the
 * tokenizer is not included. Its FLOPs agree with flops.c's GEMM share.
 */
#ifndef CAE_GEMM_SHAPES_H
#define CAE_GEMM_SHAPES_H

#include "model/cae_config.h"

#include <stddef.h>

typedef struct {
    size_t m, n, k, batch; /* batch 1: a plain GEMM */
    int trans_a, trans_b;
    size_t count;          /* times per step */
    const char *group;     /* "linear fwd", "linear dx", "linear dW", "attention" */
} cae_gemm_shape;

/* Fills out (up to cap) with the step's distinct shapes, merged, largest
 * FLOP share first; returns how many there are (may exceed cap). */
size_t cae_gemm_shapes(const cae_config *cfg, size_t B, cae_gemm_shape *out, size_t cap);

/* 2*m*n*k*batch*count */
double cae_gemm_shape_flops(const cae_gemm_shape *s);

#endif

/* flops.h: the analytic floating-point operation count of one training step.
 *
 * Counted: every GEMM as 2*M*N*K (linear layers; attention's score and
 * value products, 2*Nq*Nk*dh each per head); backward as 2x forward for
 * GEMMs (input and weight gradients), except the patch embedding, whose
 * input needs no gradient (1x). The alignment pass (the encoder over the
 * masked patches, the target of the alignment loss) runs forward only.
 * Elementwise work is small beside the GEMMs and is counted by convention:
 * loss 6 per logit (softmax, log, gradient; the same for the pixel MSE) plus
 * 4 per alignment element (difference, square, sum, gradient); optimizer 14
 * per parameter (global norm 2, AdamW update 12). LayerNorm, GELU, softmax
 * and residual additions are not counted.
 */
#ifndef CAE_FLOPS_H
#define CAE_FLOPS_H

#include "model/cae_config.h"

#include <stddef.h>
#include <stdio.h>

typedef struct {
    double encoder;    /* patch embedding + blocks over cls + visible, fwd + bwd */
    double alignment;  /* patch embedding + blocks over cls + masked, + projection, fwd only */
    double projection; /* D -> Dd on the visible pass (0 when Dd == D), fwd + bwd */
    double regressor;  /* cross-attention blocks, fwd + bwd */
    double decoder;    /* self-attention blocks over the masked tokens, fwd + bwd */
    double head;       /* Dd -> K, fwd + bwd */
    double loss;
    double optimizer;
    double total;
} cae_flops;

/* cfg after cae_config_finish; B images per step; n_params trainable
 * parameters (the optimizer's share). */
void cae_flops_count(const cae_config *cfg, size_t B, size_t n_params, cae_flops *out);
/* The table, one part per line, and the total. */
void cae_flops_print(const cae_flops *f, FILE *out);

#endif

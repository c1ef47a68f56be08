/* step_io.h: files in and out of one step (cae-cl-step): weights and a
 * batch from safetensors, the step's outputs to safetensors, and the
 * comparison with expected outputs. */
#ifndef CAE_STEP_IO_H
#define CAE_STEP_IO_H

#include "model/model.h"

#include <stdio.h>

/* Every trainable tensor under its official key (F32, exact shape). Derived
 * tensors (encoder.pos_embed, rd_pos_embed, alignment_encoder.*, frozen
 * regressor gammas) may be present and are checked against what they must
 * be; any other key is refused. */
int cae_step_load_weights(cae_model *m, const char *path);

/* The batch size of a batch file (its samples' first dimension). */
int cae_step_batch_size(const char *path, size_t *batch);
/* samples F32 [B,3,S,S]; bool_masked_pos U8 or BOOL [B,N]; labels I64 [B*M]. */
int cae_step_load_batch(cae_model *m, const char *path);
/* A batch drawn from seed: normal samples, a random M-subset mask per
 * sample, uniform labels (for timing without files). */
int cae_step_synthetic_batch(cae_model *m, uint64_t seed);

/* loss, loss_main, loss_align, mlm_acc, logits, latent_predict,
 * latent_target and grad/<key> for every trainable tensor. */
int cae_step_write_outputs(cae_model *m, const cae_losses *l, const char *path);

/* Compare with an expected-outputs file: one line per tensor (max abs and
 * relative L2 error) to report, then PASS or FAIL. Returns 0 on PASS, 1 on
 * FAIL, -1 on an error reading the file. */
int cae_step_check(cae_model *m, const cae_losses *l, const char *path, double tolerance,
                   FILE *report);

#endif

/* tinymodel.h: the tiny CAE configurations of the suites that build a whole
 * model (checkpoints, the all-reduce, the evaluation encoder, fine-tuning).
 * In its own file of the test archive: only the suites that call it link
 * the model's library for it.
 */
#ifndef CAE_TESTS_TINYMODEL_H
#define CAE_TESTS_TINYMODEL_H

#include "model/cae_config.h"

/* cae_config_defaults, then the given sizes, patches of 4 pixels and two
 * heads in the encoder and the decoder; the caller sets what else differs
 * and finishes the configuration. */
void tu_tiny_config(cae_config *c, int input_size, int embed_dim, int depth,
                    int decoder_embed_dim, int num_mask_patches);

/* A finished pretraining configuration of 8x8 images: 2 of the 4 patches
 * masked, decoder width 16, one regressor and one decoder block, layer
 * scales 0.1, decoder_num_classes tokens. */
void tu_tiny_pretrain_config(cae_config *c, int embed_dim, int depth, int decoder_num_classes);

#endif

/* layer_decay.h: layer-wise learning-rate decay of the fine-tuning
 * parameter groups, as the official optim_factory.get_parameter_groups with
 * LayerDecayValueAssigner (run_class_finetuning.py).
 *
 * With num_layers = depth (the encoder's blocks): layer id 0 for cls_token,
 * mask_token, pos_embed and patch_embed.*; blocks.i.* -> i + 1; everything
 * else (fc_norm, head) -> depth + 1. Tensor scale = layer_decay ^ (depth +
 * 1 - layer id): the head trains at the full lr, each block below at one
 * more factor. Names are the fine-tuning model's (no encoder. prefix). */
#ifndef CAE_LAYER_DECAY_H
#define CAE_LAYER_DECAY_H

#include "model/params.h"

int cae_layer_id(const char *name, int depth);
/* scales[i] for every entry of t (t->n doubles) */
void cae_layer_decay_scales(const cae_param_table *t, int depth, double layer_decay,
                            double *scales);

#endif

/* tinymodel.c: the tiny configurations of tinymodel.h. */
#include "tinymodel.h"

#include <check.h>

void tu_tiny_config(cae_config *c, int input_size, int embed_dim, int depth,
                    int decoder_embed_dim, int num_mask_patches)
{
    cae_config_defaults(c);
    c->input_size = input_size;
    c->patch_size = 4;
    c->embed_dim = embed_dim;
    c->depth = depth;
    c->num_heads = 2;
    c->decoder_embed_dim = decoder_embed_dim;
    c->decoder_num_heads = 2;
    c->num_mask_patches = num_mask_patches;
}

void tu_tiny_pretrain_config(cae_config *c, int embed_dim, int depth, int decoder_num_classes)
{
    tu_tiny_config(c, 8, embed_dim, depth, 16, 2);
    c->regressor_depth = 1;
    c->decoder_depth = 1;
    c->decoder_num_classes = decoder_num_classes;
    c->layer_scale_init_value = 0.1;
    c->decoder_layer_scale_init_value = 0.1;
    ck_assert_int_eq(cae_config_finish(c), 0);
}

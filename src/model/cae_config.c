/* cae_config.c: presets and validation of the model sizes. */
#include "model/cae_config.h"

#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>

void cae_config_defaults(cae_config *c)
{
    memset(c, 0, sizeof *c);
    c->input_size = 224;
    c->patch_size = 16;
    c->embed_dim = 768;
    c->depth = 12;
    c->num_heads = 12;
    c->mlp_ratio = 4.0;
    c->decoder_embed_dim = 768;
    c->regressor_depth = 4;
    c->decoder_depth = 4;
    c->decoder_num_heads = 12;
    c->decoder_num_classes = 8192;
    c->layer_scale_init_value = 0.1;
    c->decoder_layer_scale_init_value = 0.1;
    c->align_loss_weight = 2.0;
    c->num_mask_patches = 75;
    c->drop_path = 0.0;
}

int cae_config_preset(cae_config *c, const char *model)
{
    static const struct {
        const char *name;
        int dim, depth, heads;
    } presets[] = {
        {"cae_tiny_patch16_224_8k_vocab", 192, 12, 12},
        {"cae_small_patch16_224_8k_vocab", 384, 12, 12},
        {"cae_base_patch16_224_8k_vocab", 768, 12, 12},
        {"cae_large_patch16_224_8k_vocab", 1024, 24, 16},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        /* the fine-tuning models carry the same names without the
         * tokenizer's "_8k_vocab" (cae_base_patch16_224) */
        size_t stem = strlen(presets[i].name) - strlen("_8k_vocab");
        if (strcmp(model, presets[i].name) == 0 ||
            (strlen(model) == stem && strncmp(model, presets[i].name, stem) == 0)) {
            c->patch_size = 16;
            c->embed_dim = presets[i].dim;
            c->depth = presets[i].depth;
            c->num_heads = presets[i].heads;
            c->mlp_ratio = 4.0;
            return 0;
        }
    }
    cae_errorf("--model %s: unknown model (known: cae_tiny_patch16_224_8k_vocab, "
               "cae_small_patch16_224_8k_vocab, cae_base_patch16_224_8k_vocab, "
               "cae_large_patch16_224_8k_vocab, or the same without _8k_vocab)", model);
    return -1;
}

static int positive(const char *flag, int v)
{
    if (v <= 0) {
        cae_errorf("%s %d: must be positive", flag, v);
        return -1;
    }
    return 0;
}

static int divides(const char *flag_a, int a, const char *flag_b, int b)
{
    if (b % a != 0) {
        cae_errorf("%s %d does not divide %s %d", flag_a, a, flag_b, b);
        return -1;
    }
    return 0;
}

int cae_config_has_alignment(const cae_config *c)
{
    return c->align_loss_weight != 0.0;
}

/* Every size but the masking's */
static int finish_sizes(cae_config *c)
{
    CAE_TRY(positive("--input_size", c->input_size));
    CAE_TRY(positive("--patch_size", c->patch_size));
    CAE_TRY(positive("--embed_dim", c->embed_dim));
    CAE_TRY(positive("--num_heads", c->num_heads));
    CAE_TRY(positive("--decoder_embed_dim", c->decoder_embed_dim));
    CAE_TRY(positive("--decoder_num_heads", c->decoder_num_heads));
    CAE_TRY(positive("--decoder_num_classes", c->decoder_num_classes));
    CAE_TRY(divides("--patch_size", c->patch_size, "--input_size", c->input_size));
    CAE_TRY(divides("--num_heads", c->num_heads, "--embed_dim", c->embed_dim));
    CAE_TRY(divides("--decoder_num_heads", c->decoder_num_heads, "--decoder_embed_dim",
                    c->decoder_embed_dim));
    /* the sin-cos tables split the width in four */
    CAE_TRY(divides("4 (sin-cos position table)", 4, "--embed_dim", c->embed_dim));
    CAE_TRY(divides("4 (sin-cos position table)", 4, "--decoder_embed_dim", c->decoder_embed_dim));
    if (c->depth < 0 || c->regressor_depth < 0 || c->decoder_depth < 0) {
        cae_errorf("--depth, --regressor_depth and --decoder_depth must not be negative");
        return -1;
    }
    if (c->mlp_ratio <= 0) {
        cae_errorf("--mlp_ratio %g: must be positive", c->mlp_ratio);
        return -1;
    }
    if (c->layer_scale_init_value < 0 || c->decoder_layer_scale_init_value < 0) {
        cae_errorf("layer scale init values must not be negative");
        return -1;
    }
    if (c->drop_path < 0 || c->drop_path >= 1) {
        cae_errorf("--drop_path %g: must be in [0, 1)", c->drop_path);
        return -1;
    }
    c->grid = c->input_size / c->patch_size;
    c->num_patches = c->grid * c->grid;
    if (c->pixel_target) /* the head predicts each masked patch's pixels */
        c->decoder_num_classes = 3 * c->patch_size * c->patch_size;
    /* int(dim * mlp_ratio), as nn.Linear's hidden size in the official Mlp */
    c->mlp_hidden = (int)(c->embed_dim * c->mlp_ratio);
    c->decoder_mlp_hidden = (int)(c->decoder_embed_dim * c->mlp_ratio);
    CAE_TRY(positive("--mlp_ratio times width", c->mlp_hidden));
    CAE_TRY(positive("--mlp_ratio times decoder width", c->decoder_mlp_hidden));
    return 0;
}

int cae_config_finish(cae_config *c)
{
    CAE_TRY(finish_sizes(c));
    if (c->num_mask_patches <= 0 || c->num_mask_patches >= c->num_patches) {
        cae_errorf("--num_mask_patches %d: must be in [1, %d) for %d patches",
                   c->num_mask_patches, c->num_patches, c->num_patches);
        return -1;
    }
    c->num_visible = c->num_patches - c->num_mask_patches;
    return 0;
}

int cae_config_finish_encoder(cae_config *c)
{
    CAE_TRY(finish_sizes(c));
    c->num_visible = c->num_patches; /* no masking: the encoder sees every patch */
    return 0;
}

void cae_config_describe(const cae_config *c, char *out, size_t size)
{
    snprintf(out, size,
             "input %d patch %d | encoder %dx%d, %d heads, mlp %d | regressor %d, decoder %d, "
             "width %d, %d heads | %s %d | mask %d of %d | layer scale %g / %g | align %g",
             c->input_size, c->patch_size, c->embed_dim, c->depth, c->num_heads, c->mlp_hidden,
             c->regressor_depth, c->decoder_depth, c->decoder_embed_dim, c->decoder_num_heads,
             c->pixel_target ? (c->norm_pix_loss ? "normalized pixel target, outputs" : "pixel target, outputs")
                             : "vocabulary",
             c->decoder_num_classes, c->num_mask_patches, c->num_patches,
             c->layer_scale_init_value, c->decoder_layer_scale_init_value, c->align_loss_weight);
}

/* cae_config.h: the CAE model's sizes and loss weights, with the official
 * presets (--model cae_{tiny,small,base,large}_patch16_224_8k_vocab). */
#ifndef CAE_CONFIG_H
#define CAE_CONFIG_H

#include <stddef.h>

typedef struct {
    int input_size, patch_size;
    int embed_dim, depth, num_heads;
    double mlp_ratio;
    int decoder_embed_dim, regressor_depth, decoder_depth, decoder_num_heads;
    int decoder_num_classes;
    double layer_scale_init_value, decoder_layer_scale_init_value;
    double align_loss_weight;
    int num_mask_patches;
    double drop_path;
    /* target: 0 = tokenizer labels and cross-entropy (dall-e); 1 = the
     * masked patches' pixels and MSE (--discrete_vae_type pixel), with a
     * head of 3*P*P outputs; norm_pix_loss normalizes each target patch */
    int pixel_target, norm_pix_loss;
    /* derived by cae_config_finish */
    int grid, num_patches, num_visible;
    int mlp_hidden, decoder_mlp_hidden;
} cae_config;

/* The official run_pretraining.py defaults with the cae_base preset. */
void cae_config_defaults(cae_config *c);
/* Apply a --model preset (encoder sizes only, as the official model file);
 * -1 (reported) for an unknown name. */
int cae_config_preset(cae_config *c, const char *model);
/* Check the sizes and fill the derived fields; -1 with the offending flag
 * named on failure. */
int cae_config_finish(cae_config *c);
/* The same for the programs that use the pretrained encoder alone (the
 * probes, fine-tuning): --num_mask_patches, pretraining's, is not checked
 * (its default need not fit a small --input_size), nothing is masked. */
int cae_config_finish_encoder(cae_config *c);
/* Whether the loss has the alignment term: with --align_loss_weight 0 the
 * step neither computes the alignment target nor counts or reports it. */
int cae_config_has_alignment(const cae_config *c);
/* One line describing the model, for logs. */
void cae_config_describe(const cae_config *c, char *out, size_t size);

#endif

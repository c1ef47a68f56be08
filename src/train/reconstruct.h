/* reconstruct.h: reconstruction pictures of the pixel target (issue 16).
 *
 * A picture shows n images (8 when the data set has them) in columns and
 * four rows: the original, the masked input (masked patches neutral gray),
 * the prediction pasted into the masked patches, and the prediction alone
 * (visible patches gray). Every image is de-normalized with the model's
 * normalization (ImageNet's or 0.5 / 0.5), clamped to [0, 1], quantized to
 * 8 bits as floor(255 x + 0.5), and enlarged by an integer factor (nearest
 * neighbour) so small inputs stay readable; cells are 2 pixels apart on
 * white. Under --norm_pix_loss each predicted patch is rescaled with its
 * own target patch's mean and sqrt(biased variance + 1e-6), as MAE's
 * visualization does.
 *
 * The images are held out from training: Fashion-MNIST's test split for the
 * built-in data, else the ImageFolder beside --data_path named val (a
 * sibling folder), else the training folder itself. Image k of n is sample
 * k * len / n, through the evaluation transform (cls_transform.h; an
 * image of another size than a small input is resized, see load_one); mask k
 * comes from the seed alone, so every checkpoint shows the same images and
 * masks. cae-cl-train draws <output_dir>/reconstruction-<epoch>.png at each
 * checkpoint with a model instance of its own (the training model, its
 * gradients and the data streams are not touched); CAE_NO_RECONSTRUCTION=1
 * turns that off. cae-cl-reconstruct draws it from a checkpoint.
 */
#ifndef CAE_RECONSTRUCT_H
#define CAE_RECONSTRUCT_H

#include "data/dataset.h"
#include "data/image.h"
#include "model/model.h"
#include "train/args.h"

#include <stdint.h>

#define CAE_RECON_IMAGES 8
/* the masks' seed in cae-cl-train, and cae-cl-reconstruct's default */
#define CAE_RECON_SEED 0x7265636f6eULL
#define CAE_RECON_GAP 2     /* pixels between cells */
#define CAE_RECON_GRAY 128  /* masked patches */

typedef struct {
    int n, S, P, G, M, K;   /* images, input size, patch, grid, masked, 3*P*P */
    int scale;              /* pixels per input pixel */
    int imagenet_mean_std, norm_pix;
    float *samples;         /* [n,3,S,S] the model input (normalized) */
    unsigned char *mask;    /* [n,G*G], M ones per row */
    float *pred;            /* [n*M,K] the decoder head's output, masked patches in raster order */
} cae_recon;

/* Sizes and normalization from a (its model configuration finished, pixel
 * target), room for n images. */
int cae_recon_init(cae_recon *r, const cae_args *a, int n);
void cae_recon_free(cae_recon *r);
/* The held-out images of the rule above for data_path (NULL: built-in);
 * *what names them for messages. */
int cae_recon_open_heldout(cae_dataset **ds, const char *data_path, const char **what);
/* Fills samples with r->n images of ds (an unusable one is replaced by the
 * next) and mask with --mask_generator's masks from seed. */
int cae_recon_load(cae_recon *r, const cae_dataset *ds, const cae_args *a, uint64_t seed);
/* One forward of m (batch r->n, the same configuration) on the samples and
 * masks; pred gets its head's output. m's gradients are overwritten. */
int cae_recon_predict(cae_recon *r, cae_model *m);
/* The picture of samples, mask and pred. */
int cae_recon_draw(const cae_recon *r, cae_image *out);
/* 8-bit RGB PNG through libpng, to PATH.tmp.<pid> then renamed; one line
 * naming path on failure. */
int cae_png_write(const char *path, const cae_image *img);
/* predict, draw and write path */
int cae_recon_write(cae_recon *r, cae_model *m, const char *path);

/* cae-cl-train's pictures: the first call sets up the held-out batch and a
 * model of its own (*st NULL before it), every call copies train's
 * parameters into it and writes dir/reconstruction-<epoch>.png. Nothing
 * for the DALL-E target or with CAE_NO_RECONSTRUCTION=1. A picture that
 * cannot be drawn is a warning (after the line saying why), not an error. */
typedef struct cae_recon_state cae_recon_state;
int cae_recon_checkpoint(cae_recon_state **st, cae_ctx *ctx, const cae_args *a,
                         const cae_model *train, const char *dir, uint64_t epoch);
void cae_recon_state_free(cae_recon_state *st);

#endif

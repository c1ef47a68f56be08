/* augment.h: CAE's data augmentation (the official DataAugmentationForCAE):
 * optional color jitter, horizontal flip, one RandomResizedCrop resized
 * twice (model view with --train_interpolation, tokenizer view with
 * --second_interpolation), then normalization of the model view and
 * x -> 0.8x + 0.1 (DALL-E's map_pixels) of the tokenizer view.
 * Resampling reproduces Pillow's Image.resize with a box (antialiased:
 * the filter support widens when downscaling). */
#ifndef CAE_AUGMENT_H
#define CAE_AUGMENT_H

#include "data/image.h"

#include <stdint.h>

typedef enum {
    CAE_FILTER_NEAREST,
    CAE_FILTER_BOX,
    CAE_FILTER_BILINEAR,
    CAE_FILTER_HAMMING,
    CAE_FILTER_BICUBIC,
    CAE_FILTER_LANCZOS
} cae_filter;

/* "bicubic", "lanczos", "bilinear", "nearest", "box", "hamming"; also
 * timm's "random" is refused with a message. -1 (reported) if unknown. */
int cae_filter_parse(const char *name, cae_filter *out);

/* Pillow's Image.resize((out_w, out_h), filter, box=(x0, y0, x1, y1)) on an
 * RGB image; out is [out_h][out_w][3]. */
int cae_resize(const cae_image *src, const double box[4], int out_w, int out_h, cae_filter filter,
               unsigned char *out);

typedef struct {
    int input_size;            /* S: model view */
    int second_input_size;     /* S2: tokenizer view; 0 = none */
    double crop_min, crop_max; /* RandomResizedCrop scale range */
    cae_filter interp, second_interp;
    double color_jitter;       /* brightness = contrast = saturation strength; 0 = off */
    int imagenet_mean_std;     /* 1: ImageNet mean/std; 0: 0.5/0.5 */
} cae_augment_cfg;

/* Checks the configuration (one line naming the flag on error); cae_augment
 * checks it too, but a program should call this once at start-up. */
int cae_augment_check(const cae_augment_cfg *cfg);

typedef struct cae_augment_scratch cae_augment_scratch; /* per thread */
cae_augment_scratch *cae_augment_scratch_new(void);
void cae_augment_scratch_free(cae_augment_scratch *s);

/* Every random choice comes from rng_seed alone (a pure function of it),
 * so a sample's views do not depend on threads or timing.
 * view: [3,S,S] normalized floats; view2: [3,S2,S2] in [0.1, 0.9] (may be
 * NULL when second_input_size is 0). */
int cae_augment(const cae_augment_cfg *cfg, const cae_image *img, uint64_t rng_seed,
                cae_augment_scratch *s, float *view, float *view2);

#endif

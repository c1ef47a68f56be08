/* cls_transform.h: the classification transforms of fine-tuning, as the
 * official run_class_finetuning.py builds them with timm's create_transform.
 *
 * Training (timm transforms_imagenet_train):
 *   RandomResizedCropAndInterpolation(S, scale, ratio, interp)
 *       (RandomCrop(S, padding) when crop_padding > 0)
 *   RandomHorizontalFlip(hflip)
 *   RandAugment(aa) if aa is on, else ColorJitter(cj, cj, cj) if cj > 0
 *   ToTensor + Normalize(mean, std)
 *   RandomErasing(reprob, mode 'pixel', max_count recount)
 * Evaluation: Resize(int(S / crop_pct), interp) of the shorter side (the
 * longer one int(size * long / short), torchvision), CenterCrop(S)
 * (offsets int(round((len - S) / 2))), ToTensor + Normalize.
 *
 * mean/std: ImageNet's with imagenet_mean_std, else 0.5 / 0.5 (the
 * official scripts' IMAGENET_INCEPTION_*). Scratch: cae_augment_scratch
 * (one per thread), extended with the buffers these transforms need. */
#ifndef CAE_CLS_TRANSFORM_H
#define CAE_CLS_TRANSFORM_H

#include "data/augment.h"
#include "data/image.h"
#include "data/randaug.h"
#include "data/rng.h"

#include <stdint.h>

typedef struct {
    int input_size; cae_filter interp;               /* bicubic */
    double crop_min, crop_max, ratio_min, ratio_max; /* 0.08, 1, 3/4, 4/3 */
    double hflip;                                    /* 0.5 */
    double color_jitter;                             /* used only when aa is off, as timm */
    cae_randaug_cfg aa;                              /* interp and fill are set from this cfg */
    double reprob; int recount;                      /* RandomErasing, mode pixel */
    int imagenet_mean_std;
    /* > 0: RandomCrop(S, padding=crop_padding) (zero fill) in place of the
     * RandomResizedCrop, as the official build_transform does when
     * input_size <= 32 (padding 4; Fashion-MNIST's 28). */
    int crop_padding;
} cae_cls_train_cfg;

/* The official defaults (input_size 224, --aa rand-m9-mstd0.5-inc1,
 * --reprob 0.25, --recount 1, color_jitter 0.4, bicubic). */
void cae_cls_train_cfg_default(cae_cls_train_cfg *cfg);
/* The same for another input size, with the official rule for small
 * inputs: crop_padding 4 when input_size <= 32, else 0. */
void cae_cls_train_cfg_default_for(cae_cls_train_cfg *cfg, int input_size);
/* One clear line naming the flag on a bad value. */
int cae_cls_train_check(const cae_cls_train_cfg *cfg);

/* The training transform; every random choice comes from seed alone. */
int cae_cls_train_transform(const cae_cls_train_cfg *cfg, const cae_image *img, uint64_t seed,
                            cae_augment_scratch *s, float *view /* [3,S,S] normalized */);

/* The official build_transform's crop_pct for the evaluation of input_size:
 * 0 (no resize, no crop) for inputs of 32 pixels or less, else 0.875. */
double cae_cls_eval_crop_pct(int input_size);
/* crop_pct 0: no resize and no crop, ToTensor + Normalize only, as the
 * official build_transform for input_size <= 32; the image must then be
 * S x S (refused otherwise). */
int cae_cls_eval_transform(int input_size, double crop_pct /* 0.875 */, cae_filter interp,
                           int imagenet_mean_std, const cae_image *img, cae_augment_scratch *s,
                           float *view /* [3,S,S] */);

/* timm's RandomErasing in mode 'pixel' on one normalized [3,h,w] tensor:
 * with probability prob, count = recount == 1 ? 1 : uniform in 1..recount
 * boxes, each with up to 10 attempts of area uniform(0.02, 1/3) * h * w /
 * count and aspect exp(uniform(log 0.3, log 1/0.3)), h' = round(sqrt(area *
 * aspect)), w' = round(sqrt(area / aspect)), kept when w' < w and h' < h,
 * at a uniform top-left; the box gets N(0, 1) values per pixel and channel.
 * Returns the number of boxes placed; boxes[k] = {top, left, height, width}
 * when boxes is not NULL (room for recount). */
int cae_random_erasing(cae_rng *r, double prob, int recount, float *view, int h, int w,
                       int (*boxes)[4]);

#endif

/* randaug.h: timm's RandAugment (timm 0.3-0.4, auto_augment.py), as the
 * official CAE/BEiT fine-tuning uses it: --aa rand-m9-mstd0.5-inc1.
 *
 * Each of num_layers rounds picks one of 15 ops uniformly (with
 * replacement, numpy's choice), applies it with probability prob (0.5),
 * with magnitude m + N(0, mstd) clipped to [0, mmax] (mmax 10), mapped to
 * the op's argument by timm's level functions (a random sign for the
 * signed ones). The ops are Pillow's, reproduced on 8-bit RGB:
 * ImageOps autocontrast / equalize / invert / posterize / solarize, the
 * solarize-add LUT, ImageEnhance Color / Contrast / Brightness / Sharpness
 * (Image.blend in single precision; Contrast's degenerate level is the
 * rounded mean of the L image; Sharpness blends with the SMOOTH 3x3 filter,
 * border pixels kept), and Image.rotate / Image.transform(AFFINE) with the
 * resampling given (timm passes hparams['interpolation'], i.e. the
 * training interpolation, bicubic here, when it is not 'random'), and
 * fillcolor = the normalization mean in 8 bits (timm's img_mean:
 * round(255 * mean), so 128 for the 0.5 mean, (124, 116, 104) for
 * ImageNet's). */
#ifndef CAE_RANDAUG_H
#define CAE_RANDAUG_H

#include "data/augment.h"
#include "data/rng.h"

#include <stdint.h>

/* The op list, in timm's order (_RAND_TRANSFORMS / _RAND_INCREASING_TRANSFORMS:
 * the same ops, the *Increasing level functions when increasing is set). */
typedef enum {
    CAE_RA_AUTOCONTRAST,
    CAE_RA_EQUALIZE,
    CAE_RA_INVERT,
    CAE_RA_ROTATE,      /* arg: degrees, counter-clockwise (Image.rotate) */
    CAE_RA_POSTERIZE,   /* arg: bits kept, 0..8 */
    CAE_RA_SOLARIZE,    /* arg: threshold, 0..256 */
    CAE_RA_SOLARIZE_ADD,/* arg: added below 128, 0..110 */
    CAE_RA_COLOR,       /* arg: enhance factor */
    CAE_RA_CONTRAST,
    CAE_RA_BRIGHTNESS,
    CAE_RA_SHARPNESS,
    CAE_RA_SHEAR_X,     /* arg: shear factor (AFFINE (1, f, 0, 0, 1, 0)) */
    CAE_RA_SHEAR_Y,     /* AFFINE (1, 0, 0, f, 1, 0) */
    CAE_RA_TRANSLATE_X, /* arg: fraction of the width (TranslateXRel) */
    CAE_RA_TRANSLATE_Y, /* fraction of the height */
    CAE_RA_NUM_OPS
} cae_ra_op;

typedef struct {
    int num_layers;       /* n (default 2); 0 = RandAugment off */
    double magnitude;     /* m (default 10) */
    double magnitude_std; /* mstd (default 0); > 100: uniform in [0, m] (timm's 'inf') */
    int increasing;       /* inc */
    double prob;          /* p: each chosen op applies with this probability (0.5) */
    /* additions to the brief's fields: */
    double magnitude_max; /* mmax: upper clip of the noisy magnitude (10) */
    cae_filter interp;    /* resampling of the geometric ops: BILINEAR or BICUBIC */
    unsigned char fill[3];/* fill color of the geometric ops */
} cae_randaug_cfg;

/* "rand-m9-mstd0.5-inc1": sections after "rand" are m<float>, n<int>,
 * mstd<float>, mmax<float>, inc<0|1>, p<float>, in any order (timm's
 * grammar; m accepts a float as later timm does). "" or "none" = off.
 * Sets interp BICUBIC and fill 128 (the CAE setting; cae_cls_train_transform
 * overrides both from its own configuration). Refused, with one line naming
 * --aa: other policies ('original', 'v0', 'augmix'), weight sets (w), any
 * unknown section. Note: timm 0.4 reads inc0 as true (bool('0')); we read
 * it as off. */
int cae_randaug_parse(const char *spec, cae_randaug_cfg *cfg);

/* timm's level_to_arg of one op at a (clipped) magnitude; negate = the
 * outcome of timm's _randomly_negate for signed ops (ignored otherwise). */
double cae_randaug_level(cae_ra_op op, int increasing, double magnitude, int negate);

/* Apply one op with its argument (as level returns it) to a w x h RGB
 * image in place. scratch: w * h * 3 bytes. interp/fill as in the config. */
int cae_randaug_op(cae_ra_op op, double arg, cae_filter interp, const unsigned char fill[3],
                   unsigned char *rgb, int w, int h, unsigned char *scratch);

/* The random part of RandAugment: for each of num_layers rounds, the op,
 * whether it applies, its clipped magnitude and sign, and its argument. */
typedef struct {
    cae_ra_op op;
    int applied;
    double magnitude;
    int negate;
    double arg;
} cae_randaug_step;

/* Fills steps[0 .. cfg->num_layers - 1] (at most 128 rounds). */
int cae_randaug_draw(const cae_randaug_cfg *cfg, cae_rng *r, cae_randaug_step *steps);

/* The whole RandAugment on a w x h RGB image in place, drawing from r. */
int cae_randaug_apply_rng(const cae_randaug_cfg *cfg, cae_rng *r, unsigned char *rgb, int w,
                          int h, unsigned char *scratch);

/* The same, *rng being a splitmix64 state: one word is drawn from it (so it
 * advances) to seed the generator of this call. */
int cae_randaug_apply(const cae_randaug_cfg *cfg, uint64_t *rng, unsigned char *rgb, int w, int h,
                      unsigned char *scratch /* w*h*3 */);

#endif

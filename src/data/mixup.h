/* mixup.h: timm's Mixup in mode 'batch' (timm 0.3-0.4 mixup.py), as the
 * official fine-tuning uses it (--mixup, --cutmix, --mixup_prob,
 * --mixup_switch_prob, --smoothing).
 *
 * Per batch: with probability prob, when both alphas are > 0 cutmix is
 * chosen with probability switch_prob, lam ~ Beta(alpha, alpha) of the
 * chosen one. Mixup: x = lam x + (1 - lam) flip(x) (flip = the batch
 * reversed, in single precision as torch's mul_/add_). CutMix: rand_bbox
 * with cut = int(S * sqrt(1 - lam)) around a uniform center (clipped), the
 * box of flip(x) pasted, lam corrected to 1 - box area / S^2.
 * Targets: off = smoothing / K, on = 1 - smoothing + off; y = lam
 * onehot(labels) + (1 - lam) onehot(flip(labels)) in single precision. */
#ifndef CAE_MIXUP_H
#define CAE_MIXUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct { double mixup_alpha, cutmix_alpha, prob, switch_prob, smoothing; int num_classes; } cae_mixup_cfg;

/* One clear line naming the flag on a bad value. */
int cae_mixup_check(const cae_mixup_cfg *cfg);

/* 1 when mixup or cutmix is on (timm creates the Mixup only then). */
int cae_mixup_active(const cae_mixup_cfg *cfg);

/* The random part of one batch. lam is final (corrected for cutmix);
 * lam == 1 means no mixing. Box rows [yl, yh), columns [xl, xh). */
typedef struct {
    double lam;
    int use_cutmix;
    int yl, yh, xl, xh;
} cae_mixup_params;

/* timm's rand_bbox (margin 0) for a given center, then correct_lam:
 * cut = int(S sqrt(1 - lam)), rows clip(cy -+ cut // 2), columns likewise;
 * p->lam = 1 - box area / S^2, use_cutmix = 1. */
void cae_cutmix_box(int S, double lam, int cy, int cx, cae_mixup_params *p);

void cae_mixup_draw(const cae_mixup_cfg *cfg, uint64_t seed, int S, cae_mixup_params *p);

/* Mix with given parameters (images [B,3,S,S] in place, targets [B,K]). */
int cae_mixup_apply_with(const cae_mixup_cfg *cfg, const cae_mixup_params *p, float *images,
                         size_t B, int S, const int32_t *labels, float *targets);

/* timm Mixup in mode 'batch' (with correct_lam for cutmix); images [B,3,S,S] mixed in place with
   the flipped batch; targets [B,K] = smoothed one-hot mix. With mixup and cutmix off it just writes
   label-smoothed targets. Odd B is refused (timm requires even). All draws from seed.
   lam_out (may be NULL): the lam used. */
int cae_mixup_apply(const cae_mixup_cfg *cfg, uint64_t seed, float *images, size_t B, int S,
                    const int32_t *labels, float *targets, double *lam_out);

#endif

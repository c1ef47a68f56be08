/* augment_internal.h: the pieces of resize.c and augment.c that the
 * augmentation itself and tests/check/test_augment.c use directly: resampling of
 * a strided RGB view with reusable work buffers, ColorJitter with explicit
 * factors, and the random plan of one sample (jitter, flip, crop box) kept
 * apart from its execution. Not part of the library's public interface. */
#ifndef CAE_AUGMENT_INTERNAL_H
#define CAE_AUGMENT_INTERNAL_H

#include "data/augment.h"
#include "data/rng.h"

#include <stddef.h>
#include <stdint.h>

/* ---- resize.c ---- */

/* One axis of a resampling: per output index the first source index and
 * the number of taps, and ksize fixed-point weights (22 fraction bits). */
typedef struct {
    int ksize;
    int *bounds;  /* [out][2]: first tap, tap count */
    int32_t *k;   /* [out][ksize] */
    double *kd;   /* [ksize] scratch for one output's weights */
    size_t cap_bounds, cap_k, cap_kd;
} cae_resize_axis;

/* Buffers reused between calls (one per thread); zero-initialize. */
typedef struct {
    cae_resize_axis horiz, vert;
    unsigned char *tmp; /* the horizontal pass's rows */
    size_t cap_tmp;
    int *xin;           /* nearest: source column per output column */
    size_t cap_xin;
} cae_resize_work;

void cae_resize_work_free(cae_resize_work *w);

/* cae_resize on a view: w x h RGB pixels whose rows start stride bytes
 * apart. box is Pillow's (x0, y0, x1, y1) in single precision, as Pillow
 * stores it. out is [out_h][out_w][3]. */
int cae_resize_view(const unsigned char *src, int w, int h, size_t stride, const float box[4],
                    int out_w, int out_h, cae_filter filter, cae_resize_work *work,
                    unsigned char *out);

/* ---- augment.c: the scratch buffers (one set per thread) ---- */

/* Shared by cae_augment and the classification transforms (cls_transform.c):
 * crop, out1, out2 and aux are byte buffers grown on demand. */
struct cae_augment_scratch {
    unsigned char *crop, *out1, *out2; /* flipped/jittered crop; the two resized views */
    size_t cap_crop, cap_out1, cap_out2;
    unsigned char *aux;                /* RandAugment's scratch image */
    size_t cap_aux;
    cae_resize_work work;
};

/* Make *p hold at least n bytes (realloc); -1 (reported) when out of memory. */
int cae_augment_grow(unsigned char **p, size_t *cap, size_t n);

/* [S][S][3] bytes -> [3][S][S] floats: (x / 255 - mean) / std in float, as
 * ToTensor + Normalize; ImageNet's mean/std or 0.5 / 0.5. */
void cae_normalize_view(const unsigned char *px, int S, int imagenet, float *view);
/* The per-channel mean and std cae_normalize_view uses. */
void cae_normalize_stats(int imagenet, float mean[3], float std[3]);

/* ---- augment.c: Pillow's pixel arithmetic ---- */

/* ImagingBlend of one channel: in1 + alpha (in2 - in1) in single precision,
 * truncated; clipped only when extrapolating (alpha outside [0, 1]). */
unsigned char cae_pil_blend(int in1, int in2, float alpha);
/* RGB -> L: ITU-R 601-2 luma in 16-bit fixed point, rounded. */
int cae_pil_luma(const unsigned char p[3]);

/* ---- augment.c: ColorJitter ---- */

enum { CAE_JITTER_BRIGHTNESS, CAE_JITTER_CONTRAST, CAE_JITTER_SATURATION };

/* torchvision's ColorJitter(b, c, s) with its random draws made: the three
 * ops in order (op ids above) and each op's factor, indexed by op. Each op
 * is PIL's ImageEnhance: Image.blend(degenerate, image, factor) with
 * degenerate black (brightness), the rounded mean of the grayscale image
 * (contrast) or the grayscale image itself (saturation). */
typedef struct {
    int order[3];
    float factor[3];
} cae_jitter;

/* The contrast op's degenerate level: int(mean(L) + 0.5) of the image as
 * it is when contrast runs (after the ops before it in order). */
int cae_jitter_contrast_mean(const cae_jitter *j, const unsigned char *rgb, int w, int h,
                             size_t stride);
/* Apply the three ops to one pixel, given the contrast mean. */
void cae_jitter_pixel(const cae_jitter *j, int contrast_mean, unsigned char px[3]);
/* The whole thing on a contiguous w x h image, in place. */
void cae_jitter_image(const cae_jitter *j, unsigned char *rgb, int w, int h);

/* torchvision's ColorJitter(cj, cj, cj).get_params: a random order of the
 * three ops and factors uniform in [max(0, 1 - cj), 1 + cj]. */
void cae_jitter_draw(cae_rng *r, double cj, cae_jitter *j);

/* ---- augment.c: the random plan of one sample ---- */

typedef struct {
    int jitter;     /* 1: apply j (color_jitter > 0) */
    cae_jitter j;
    int flip;       /* 1: mirror left-right before cropping */
    int i, jx;      /* crop top and left in the (flipped) image */
    int h, w;       /* crop height and width */
} cae_augment_plan;

/* Draw a sample's plan from rng_seed alone: when color_jitter > 0 a random
 * order of the three ops and factors uniform in [max(0, 1 - cj), 1 + cj];
 * a flip with probability 1/2; torchvision's RandomResizedCrop.get_params
 * on the width x height image, scale [crop_min, crop_max], ratio [3/4, 4/3]. */
void cae_augment_plan_make(const cae_augment_cfg *cfg, int width, int height, uint64_t rng_seed,
                           cae_augment_plan *p);
/* torchvision's (and timm's) RandomResizedCrop.get_params on a W x H image
 * into p->i, p->jx, p->h, p->w: 10 attempts of scale in [smin, smax] and
 * log-uniform ratio in [rmin, rmax], then the central fallback. */
void cae_rrc_params(cae_rng *r, int W, int H, double smin, double smax, double rmin,
                    double rmax, cae_augment_plan *p);
/* Execute a plan (cae_augment = plan_make + apply). */
int cae_augment_apply(const cae_augment_cfg *cfg, const cae_image *img,
                      const cae_augment_plan *p, cae_augment_scratch *s, float *view,
                      float *view2);

#endif

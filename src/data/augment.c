/* augment.c: the official DataAugmentationForCAE on one decoded image.
 *
 *   ColorJitter(cj, cj, cj) when color_jitter > 0   (torchvision on PIL images)
 *   RandomHorizontalFlip(0.5)
 *   RandomResizedCropAndInterpolationWithTwoPic     (one crop box, resized
 *       to S with interp and to S2 with second_interp: crop, then resize)
 *   ToTensor + Normalize(mean, std)                  (model view)
 *   ToTensor + map_pixels: 0.8x + 0.1                (tokenizer view)
 *
 * A sample's random choices are drawn first (cae_augment_plan_make), then
 * executed (cae_augment_apply). Color jitter is pointwise except for the
 * contrast op's mean, which needs one pass over the whole image; flipping
 * does not change that mean. So only the crop's pixels are flipped and
 * jittered, into the scratch buffer, and both resizes read that copy (or
 * the image itself when neither flip nor jitter applies). */
#include "data/augment_internal.h"
#include "data/rng.h"

#include "runtime/errors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cae_augment_scratch *cae_augment_scratch_new(void)
{
    cae_augment_scratch *s = calloc(1, sizeof *s);
    if (s == NULL)
        cae_errorf("augment: out of memory for the scratch buffers (%s:%d)", __FILE__, __LINE__);
    return s;
}

void cae_augment_scratch_free(cae_augment_scratch *s)
{
    if (s == NULL)
        return;
    free(s->crop);
    free(s->out1);
    free(s->out2);
    free(s->aux);
    cae_resize_work_free(&s->work);
    free(s);
}

int cae_augment_grow(unsigned char **p, size_t *cap, size_t n)
{
    unsigned char *q;
    if (n <= *cap)
        return 0;
    q = realloc(*p, n);
    if (q == NULL) {
        cae_errorf("augment: out of memory for %zu bytes (%s:%d)", n, __FILE__, __LINE__);
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

/* ---- ColorJitter: PIL's ImageEnhance through Image.blend ---- */

/* ImagingBlend: in1 + alpha * (in2 - in1) in single precision, truncated
 * to 8 bits; clipped only when extrapolating (alpha outside [0, 1]). */
unsigned char cae_pil_blend(int in1, int in2, float alpha)
{
    float t = (float)in1 + alpha * (float)(in2 - in1);
    if (alpha >= 0 && alpha <= 1.0f)
        return (unsigned char)t;
    if (t <= 0.0f)
        return 0;
    if (t >= 255.0f)
        return 255;
    return (unsigned char)t;
}

/* Pillow's RGB -> L: ITU-R 601-2 luma in 16-bit fixed point, rounded. */
int cae_pil_luma(const unsigned char p[3])
{
    return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16;
}

static void jt_op(int op, float f, int contrast_mean, unsigned char p[3])
{
    int base;
    switch (op) {
    case CAE_JITTER_BRIGHTNESS:
        base = 0;
        break;
    case CAE_JITTER_CONTRAST:
        base = contrast_mean;
        break;
    default:
        base = cae_pil_luma(p);
        break;
    }
    for (int c = 0; c < 3; c++)
        p[c] = cae_pil_blend(base, p[c], f);
}

int cae_jitter_contrast_mean(const cae_jitter *j, const unsigned char *rgb, int w, int h,
                             size_t stride)
{
    int before = 0; /* how many ops run before contrast */
    uint64_t sum = 0;
    size_t n = (size_t)w * (size_t)h;
    while (before < 3 && j->order[before] != CAE_JITTER_CONTRAST)
        before++;
    for (int y = 0; y < h; y++) {
        const unsigned char *row = rgb + (size_t)y * stride;
        for (int x = 0; x < w; x++) {
            unsigned char p[3] = {row[x * 3], row[x * 3 + 1], row[x * 3 + 2]};
            for (int k = 0; k < before && k < 3; k++)
                jt_op(j->order[k], j->factor[j->order[k]], 0, p);
            sum += (uint64_t)cae_pil_luma(p);
        }
    }
    /* ImageStat's mean (exact sum / count in double), then int(mean + 0.5) */
    return n ? (int)((double)sum / (double)n + 0.5) : 0;
}

void cae_jitter_pixel(const cae_jitter *j, int contrast_mean, unsigned char px[3])
{
    for (int k = 0; k < 3; k++)
        jt_op(j->order[k], j->factor[j->order[k]], contrast_mean, px);
}

void cae_jitter_image(const cae_jitter *j, unsigned char *rgb, int w, int h)
{
    int mean = cae_jitter_contrast_mean(j, rgb, w, h, (size_t)w * 3);
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++)
        cae_jitter_pixel(j, mean, rgb + i * 3);
}

/* ---- the plan ---- */

void cae_rrc_params(cae_rng *r, int W, int H, double smin, double smax, double rmin,
                    double rmax, cae_augment_plan *p)
{
    double area = (double)W * (double)H;
    double in_ratio = (double)W / (double)H;
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * cae_rng_range(r, smin, smax);
        double aspect = exp(cae_rng_range(r, log(rmin), log(rmax)));
        /* Python's round: half to even, as rint in the default mode */
        double w = rint(sqrt(target * aspect));
        double h = rint(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            p->w = (int)w;
            p->h = (int)h;
            p->i = (int)cae_rng_int(r, 0, H - p->h);
            p->jx = (int)cae_rng_int(r, 0, W - p->w);
            return;
        }
    }
    /* fallback: the central crop, its ratio clamped to the range */
    if (in_ratio < rmin) {
        p->w = W;
        p->h = (int)rint(W / rmin);
    } else if (in_ratio > rmax) {
        p->h = H;
        p->w = (int)rint(H * rmax);
    } else {
        p->w = W;
        p->h = H;
    }
    p->i = (H - p->h) / 2;
    p->jx = (W - p->w) / 2;
}

void cae_jitter_draw(cae_rng *r, double cj, cae_jitter *j)
{
    double lo = 1.0 - cj, hi = 1.0 + cj;
    int *ord = j->order;
    ord[0] = CAE_JITTER_BRIGHTNESS;
    ord[1] = CAE_JITTER_CONTRAST;
    ord[2] = CAE_JITTER_SATURATION;
    for (int k = 2; k > 0; k--) { /* Fisher-Yates */
        int m = (int)cae_rng_int(r, 0, k), t = ord[k];
        ord[k] = ord[m];
        ord[m] = t;
    }
    if (lo < 0)
        lo = 0;
    /* torchvision draws the factors in float */
    for (int op = 0; op < 3; op++)
        j->factor[op] = (float)cae_rng_range(r, lo, hi);
}

void cae_augment_plan_make(const cae_augment_cfg *cfg, int width, int height, uint64_t rng_seed,
                           cae_augment_plan *p)
{
    cae_rng r;
    cae_rng_seed(&r, rng_seed);
    memset(p, 0, sizeof *p);
    if (cfg->color_jitter > 0) {
        p->jitter = 1;
        cae_jitter_draw(&r, cfg->color_jitter, &p->j);
    }
    p->flip = cae_rng_uniform(&r) < 0.5;
    cae_rrc_params(&r, width, height, cfg->crop_min, cfg->crop_max, 3.0 / 4.0, 4.0 / 3.0, p);
}

/* ---- execution ---- */

int cae_augment_check(const cae_augment_cfg *cfg)
{
    if (cfg->input_size <= 0 || cfg->input_size > 65536) {
        cae_errorf("--input_size %d: must be in 1..65536", cfg->input_size);
        return -1;
    }
    if (cfg->second_input_size < 0 || cfg->second_input_size > 65536) {
        cae_errorf("--second_input_size %d: must be in 0..65536", cfg->second_input_size);
        return -1;
    }
    if (!(cfg->crop_min >= 0 && cfg->crop_max > 0 && cfg->crop_min <= cfg->crop_max &&
          cfg->crop_max < INFINITY)) {
        cae_errorf("--crop_min_size %g, --crop_max_size %g: need 0 <= min <= max, max > 0",
                   cfg->crop_min, cfg->crop_max);
        return -1;
    }
    if (!(cfg->color_jitter >= 0 && cfg->color_jitter < INFINITY)) {
        cae_errorf("--color_jitter %g: must be a finite number >= 0", cfg->color_jitter);
        return -1;
    }
    if ((unsigned)cfg->interp > CAE_FILTER_LANCZOS ||
        (unsigned)cfg->second_interp > CAE_FILTER_LANCZOS) {
        cae_errorf("augment: unknown interpolation (%d, %d)", (int)cfg->interp,
                   (int)cfg->second_interp);
        return -1;
    }
    return 0;
}

/* [S][S][3] bytes -> [3][S][S] floats: (x / 255 - mean) / std, in float
 * like ToTensor + Normalize. */
void cae_normalize_stats(int imagenet, float mean[3], float std[3])
{
    static const float inet_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float inet_std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        mean[c] = imagenet ? inet_mean[c] : 0.5f;
        std[c] = imagenet ? inet_std[c] : 0.5f;
    }
}

void cae_normalize_view(const unsigned char *px, int S, int imagenet, float *view)
{
    float means[3], stds[3];
    size_t n = (size_t)S * (size_t)S;
    cae_normalize_stats(imagenet, means, stds);
    for (int c = 0; c < 3; c++) {
        float mean = means[c], std = stds[c];
        float *o = view + (size_t)c * n;
        for (size_t i = 0; i < n; i++)
            o[i] = ((float)px[i * 3 + c] / 255.0f - mean) / std;
    }
}

/* DALL-E's map_pixels after ToTensor: (1 - 2 * 0.1) x + 0.1 */
static void aug_map_pixels(const unsigned char *px, int S, float *view)
{
    size_t n = (size_t)S * (size_t)S;
    for (int c = 0; c < 3; c++) {
        float *o = view + (size_t)c * n;
        for (size_t i = 0; i < n; i++)
            o[i] = 0.8f * ((float)px[i * 3 + c] / 255.0f) + 0.1f;
    }
}

int cae_augment_apply(const cae_augment_cfg *cfg, const cae_image *img,
                      const cae_augment_plan *p, cae_augment_scratch *s, float *view,
                      float *view2)
{
    int W = img->width, H = img->height;
    size_t img_stride = (size_t)W * 3;
    const unsigned char *src;
    size_t stride;
    float box[4];

    if (p->h <= 0 || p->w <= 0 || p->i < 0 || p->jx < 0 || p->i > H - p->h ||
        p->jx > W - p->w) {
        cae_errorf("augment: crop %d,%d %dx%d outside the %dx%d image", p->jx, p->i, p->w, p->h,
                   W, H);
        return -1;
    }
    if (!p->flip && !p->jitter) {
        src = img->rgb + (size_t)p->i * img_stride + (size_t)p->jx * 3;
        stride = img_stride;
    } else {
        int mean = p->jitter ? cae_jitter_contrast_mean(&p->j, img->rgb, W, H, img_stride) : 0;
        CAE_TRY(cae_augment_grow(&s->crop, &s->cap_crop, (size_t)p->w * (size_t)p->h * 3));
        for (int y = 0; y < p->h; y++) {
            const unsigned char *row = img->rgb + (size_t)(p->i + y) * img_stride;
            unsigned char *o = s->crop + (size_t)y * (size_t)p->w * 3;
            for (int x = 0; x < p->w; x++) {
                /* column jx + x of the mirrored image is W - 1 - (jx + x) */
                int sx = p->flip ? W - 1 - (p->jx + x) : p->jx + x;
                memcpy(o + x * 3, row + (size_t)sx * 3, 3);
                if (p->jitter)
                    cae_jitter_pixel(&p->j, mean, o + x * 3);
            }
        }
        src = s->crop;
        stride = (size_t)p->w * 3;
    }

    /* F.resized_crop: the crop is an image of its own, resized whole */
    box[0] = 0;
    box[1] = 0;
    box[2] = (float)p->w;
    box[3] = (float)p->h;
    CAE_TRY(cae_augment_grow(&s->out1, &s->cap_out1,
                     (size_t)cfg->input_size * (size_t)cfg->input_size * 3));
    CAE_TRY(cae_resize_view(src, p->w, p->h, stride, box, cfg->input_size, cfg->input_size,
                            cfg->interp, &s->work, s->out1));
    cae_normalize_view(s->out1, cfg->input_size, cfg->imagenet_mean_std, view);
    if (cfg->second_input_size > 0 && view2 != NULL) {
        int S2 = cfg->second_input_size;
        CAE_TRY(cae_augment_grow(&s->out2, &s->cap_out2, (size_t)S2 * (size_t)S2 * 3));
        CAE_TRY(cae_resize_view(src, p->w, p->h, stride, box, S2, S2, cfg->second_interp,
                                &s->work, s->out2));
        aug_map_pixels(s->out2, S2, view2);
    }
    return 0;
}

int cae_augment(const cae_augment_cfg *cfg, const cae_image *img, uint64_t rng_seed,
                cae_augment_scratch *s, float *view, float *view2)
{
    cae_augment_plan plan;
    CAE_TRY(cae_augment_check(cfg));
    if (img == NULL || img->rgb == NULL || img->width <= 0 || img->height <= 0) {
        cae_errorf("augment: empty image");
        return -1;
    }
    cae_augment_plan_make(cfg, img->width, img->height, rng_seed, &plan);
    return cae_augment_apply(cfg, img, &plan, s, view, view2);
}

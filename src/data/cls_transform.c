/* cls_transform.c: timm's classification transforms for fine-tuning and
 * evaluation (see cls_transform.h), on the resampling and color code of
 * augment.c / resize.c and the RandAugment of randaug.c.
 *
 * The training transform crops and resizes first, as timm does (so the
 * flip, RandAugment and ColorJitter see the S x S image), in the order of
 * timm's random draws: crop box, flip, RandAugment or jitter, erasing. */
#include "data/cls_transform.h"
#include "data/augment_internal.h"

#include "runtime/errors.h"

#include <math.h>
#include <string.h>

void cae_cls_train_cfg_default(cae_cls_train_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->input_size = 224;
    cfg->interp = CAE_FILTER_BICUBIC;
    cfg->crop_min = 0.08;
    cfg->crop_max = 1.0;
    cfg->ratio_min = 3.0 / 4.0;
    cfg->ratio_max = 4.0 / 3.0;
    cfg->hflip = 0.5;
    cfg->color_jitter = 0.4;
    cae_randaug_parse("rand-m9-mstd0.5-inc1", &cfg->aa);
    cfg->reprob = 0.25;
    cfg->recount = 1;
    cfg->imagenet_mean_std = 0;
}

void cae_cls_train_cfg_default_for(cae_cls_train_cfg *cfg, int input_size)
{
    cae_cls_train_cfg_default(cfg);
    cfg->input_size = input_size;
    cfg->crop_padding = input_size <= 32 ? 4 : 0;
}

double cae_cls_eval_crop_pct(int input_size)
{
    return input_size <= 32 ? 0.0 : 0.875;
}

int cae_cls_train_check(const cae_cls_train_cfg *cfg)
{
    if (cfg->input_size <= 0 || cfg->input_size > 65536) {
        cae_errorf("--input_size %d: must be in 1..65536", cfg->input_size);
        return -1;
    }
    if ((unsigned)cfg->interp > CAE_FILTER_LANCZOS) {
        cae_errorf("--train_interpolation: unknown filter %d", (int)cfg->interp);
        return -1;
    }
    if (!(cfg->crop_min >= 0 && cfg->crop_max > 0 && cfg->crop_min <= cfg->crop_max && cfg->crop_max <= 1e6)) {
        cae_errorf("crop scale (%g, %g): need 0 <= min <= max, max > 0", cfg->crop_min, cfg->crop_max);
        return -1;
    }
    if (!(cfg->ratio_min > 0 && cfg->ratio_min <= cfg->ratio_max && cfg->ratio_max < 1e6)) {
        cae_errorf("crop ratio (%g, %g): need 0 < min <= max", cfg->ratio_min, cfg->ratio_max);
        return -1;
    }
    if (!(cfg->hflip >= 0 && cfg->hflip <= 1)) {
        cae_errorf("hflip %g: must be a probability", cfg->hflip);
        return -1;
    }
    if (!(cfg->color_jitter >= 0 && cfg->color_jitter < INFINITY)) {
        cae_errorf("--color_jitter %g: must be a finite number >= 0", cfg->color_jitter);
        return -1;
    }
    if (cfg->aa.num_layers > 0 && cfg->interp != CAE_FILTER_BILINEAR &&
        cfg->interp != CAE_FILTER_BICUBIC) {
        /* timm hands the interpolation to Pillow's transform, which refuses the others */
        cae_errorf("--aa with --train_interpolation other than bilinear or bicubic: Pillow's "
                   "affine transforms (RandAugment's rotate, shear, translate) refuse it");
        return -1;
    }
    if (cfg->aa.num_layers < 0 || cfg->aa.num_layers > 128 ||
        !(cfg->aa.prob >= 0 && cfg->aa.prob <= 1)) {
        cae_errorf("--aa: bad RandAugment configuration (n %d, p %g)", cfg->aa.num_layers,
                   cfg->aa.prob);
        return -1;
    }
    if (cfg->crop_padding < 0 || cfg->crop_padding > 65536) {
        cae_errorf("crop padding %d: must be in 0..65536", cfg->crop_padding);
        return -1;
    }
    if (!(cfg->reprob >= 0 && cfg->reprob <= 1)) {
        cae_errorf("--reprob %g: must be a probability", cfg->reprob);
        return -1;
    }
    if (cfg->recount < 1 || cfg->recount > 1000) {
        cae_errorf("--recount %d: must be in 1..1000", cfg->recount);
        return -1;
    }
    return 0;
}

int cae_random_erasing(cae_rng *r, double prob, int recount, float *view, int h, int w,
                       int (*boxes)[4])
{
    const double log_lo = log(0.3), log_hi = log(1.0 / 0.3);
    size_t plane = (size_t)h * (size_t)w;
    double area = (double)h * (double)w;
    int count, placed = 0;
    if (cae_rng_uniform(r) > prob)
        return 0;
    count = recount <= 1 ? 1 : (int)cae_rng_int(r, 1, recount);
    for (int k = 0; k < count; k++)
        for (int attempt = 0; attempt < 10; attempt++) {
            double target = cae_rng_range(r, 0.02, 1.0 / 3.0) * area / count;
            double aspect = exp(cae_rng_range(r, log_lo, log_hi));
            int eh = (int)rint(sqrt(target * aspect)), ew = (int)rint(sqrt(target / aspect));
            if (ew < w && eh < h) {
                int top = (int)cae_rng_int(r, 0, h - eh), left = (int)cae_rng_int(r, 0, w - ew);
                for (int c = 0; c < 3; c++)
                    for (int y = 0; y < eh; y++) {
                        float *row = view + (size_t)c * plane + (size_t)(top + y) * (size_t)w;
                        for (int x = 0; x < ew; x++)
                            row[left + x] = (float)cae_rng_normal(r);
                    }
                if (boxes != NULL) {
                    boxes[placed][0] = top;
                    boxes[placed][1] = left;
                    boxes[placed][2] = eh;
                    boxes[placed][3] = ew;
                }
                placed++;
                break;
            }
        }
    return placed;
}

static void cls_flip(unsigned char *px, int S)
{
    for (int y = 0; y < S; y++) {
        unsigned char *row = px + (size_t)y * (size_t)S * 3;
        for (int a = 0, b = S - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                unsigned char t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
    }
}

/* RandomResizedCropAndInterpolation into out ([S][S][3]) */
static int cls_resized_crop(const cae_cls_train_cfg *cfg, const cae_image *img, cae_rng *r,
                            cae_augment_scratch *s, unsigned char *out)
{
    int S = cfg->input_size;
    cae_augment_plan p;
    float box[4];
    const unsigned char *src;
    memset(&p, 0, sizeof p);
    cae_rrc_params(r, img->width, img->height, cfg->crop_min, cfg->crop_max, cfg->ratio_min,
                   cfg->ratio_max, &p);
    if (p.w <= 0 || p.h <= 0) { /* a scale so small the box rounds to nothing */
        cae_errorf("cls transform: crop of %dx%d from a %dx%d image (crop scale too small)", p.w,
                   p.h, img->width, img->height);
        return -1;
    }
    src = img->rgb + ((size_t)p.i * (size_t)img->width + (size_t)p.jx) * 3;
    box[0] = 0;
    box[1] = 0;
    box[2] = (float)p.w;
    box[3] = (float)p.h;
    return cae_resize_view(src, p.w, p.h, (size_t)img->width * 3, box, S, S, cfg->interp,
                           &s->work, out);
}

/* torchvision RandomCrop(S, padding): pad with zeros, then a uniform S x S
 * window of the padded image (refused when that is smaller than S). */
static int cls_padded_crop(const cae_cls_train_cfg *cfg, const cae_image *img, cae_rng *r,
                           unsigned char *out)
{
    int S = cfg->input_size, pad = cfg->crop_padding, top, left;
    int64_t Hp = (int64_t)img->height + 2 * (int64_t)pad;
    int64_t Wp = (int64_t)img->width + 2 * (int64_t)pad;
    if (Hp < S || Wp < S) {
        cae_errorf("cls transform: a %dx%d image padded by %d is smaller than --input_size %d",
                   img->width, img->height, pad, S);
        return -1;
    }
    top = (int)cae_rng_int(r, 0, Hp - S) - pad;
    left = (int)cae_rng_int(r, 0, Wp - S) - pad;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int sy = top + y, sx = left + x;
            unsigned char *o = out + ((size_t)y * (size_t)S + (size_t)x) * 3;
            if (sy < 0 || sy >= img->height || sx < 0 || sx >= img->width)
                memset(o, 0, 3);
            else
                memcpy(o, img->rgb + ((size_t)sy * (size_t)img->width + (size_t)sx) * 3, 3);
        }
    return 0;
}

int cae_cls_train_transform(const cae_cls_train_cfg *cfg, const cae_image *img, uint64_t seed,
                            cae_augment_scratch *s, float *view)
{
    int S = cfg->input_size;
    size_t n;
    cae_rng r;

    CAE_TRY(cae_cls_train_check(cfg));
    if (img == NULL || img->rgb == NULL || img->width <= 0 || img->height <= 0) {
        cae_errorf("cls transform: empty image");
        return -1;
    }
    n = (size_t)S * (size_t)S * 3;
    cae_rng_seed(&r, seed);
    CAE_TRY(cae_augment_grow(&s->out1, &s->cap_out1, n));
    if (cfg->crop_padding > 0)
        CAE_TRY(cls_padded_crop(cfg, img, &r, s->out1));
    else
        CAE_TRY(cls_resized_crop(cfg, img, &r, s, s->out1));
    /* RandomHorizontalFlip: torch.rand(1) < p */
    if (cfg->hflip > 0 && cae_rng_uniform(&r) < cfg->hflip)
        cls_flip(s->out1, S);
    if (cfg->aa.num_layers > 0) {
        cae_randaug_cfg aa = cfg->aa;
        /* timm: hparams interpolation = the training one, img_mean = round(255 mean) */
        static const unsigned char inet_fill[3] = {124, 116, 104};
        aa.interp = cfg->interp;
        for (int c = 0; c < 3; c++)
            aa.fill[c] = cfg->imagenet_mean_std ? inet_fill[c] : 128;
        CAE_TRY(cae_augment_grow(&s->aux, &s->cap_aux, n));
        CAE_TRY(cae_randaug_apply_rng(&aa, &r, s->out1, S, S, s->aux));
    } else if (cfg->color_jitter > 0) {
        cae_jitter j;
        cae_jitter_draw(&r, cfg->color_jitter, &j);
        cae_jitter_image(&j, s->out1, S, S);
    }
    cae_normalize_view(s->out1, S, cfg->imagenet_mean_std, view);
    if (cfg->reprob > 0)
        cae_random_erasing(&r, cfg->reprob, cfg->recount, view, S, S, NULL);
    return 0;
}

int cae_cls_eval_transform(int input_size, double crop_pct, cae_filter interp,
                           int imagenet_mean_std, const cae_image *img, cae_augment_scratch *s,
                           float *view)
{
    int S = input_size, size, ow, oh, top, left;
    double box[4];
    if (S <= 0 || S > 65536 || !(crop_pct >= 0 && crop_pct <= 1)) {
        cae_errorf("eval transform: --input_size %d, crop_pct %g: need size in 1..65536 and "
                   "0 <= crop_pct <= 1", S, crop_pct);
        return -1;
    }
    if (img == NULL || img->rgb == NULL || img->width <= 0 || img->height <= 0) {
        cae_errorf("eval transform: empty image");
        return -1;
    }
    if (crop_pct == 0) { /* the official transform for input_size <= 32 */
        if (img->width != S || img->height != S) {
            cae_errorf("eval transform: a %dx%d image without resizing (input_size %d <= 32) "
                       "must be %dx%d", img->width, img->height, S, S, S);
            return -1;
        }
        cae_normalize_view(img->rgb, S, imagenet_mean_std, view);
        return 0;
    }
    /* torchvision Resize(int): the shorter side to size, the longer one
     * int(size * long / short) */
    size = (int)((double)S / crop_pct);
    if (img->width <= img->height) {
        ow = size;
        oh = (int)((double)size * img->height / img->width);
    } else {
        oh = size;
        ow = (int)((double)size * img->width / img->height);
    }
    if (ow < S || oh < S || ow > 65536 || oh > 65536) {
        cae_errorf("image of %dx%d: cannot resize for evaluation", img->width, img->height);
        return -1;
    }
    box[0] = 0;
    box[1] = 0;
    box[2] = img->width;
    box[3] = img->height;
    CAE_TRY(cae_augment_grow(&s->out1, &s->cap_out1, (size_t)ow * (size_t)oh * 3));
    CAE_TRY(cae_augment_grow(&s->out2, &s->cap_out2, (size_t)S * (size_t)S * 3));
    CAE_TRY(cae_resize(img, box, ow, oh, interp, s->out1));
    /* CenterCrop: int(round((len - S) / 2)), Python's round: half to even */
    top = (int)rint((oh - S) / 2.0);
    left = (int)rint((ow - S) / 2.0);
    for (int y = 0; y < S; y++)
        memcpy(s->out2 + (size_t)y * (size_t)S * 3,
               s->out1 + ((size_t)(top + y) * (size_t)ow + (size_t)left) * 3, (size_t)S * 3);
    cae_normalize_view(s->out2, S, imagenet_mean_std, view);
    return 0;
}

/* mixup.c: timm's Mixup / CutMix in mode 'batch' with label smoothing (see
 * mixup.h). The draws (numpy's rand, beta and randint in timm) come from
 * one cae_rng seeded with the batch's seed; Beta(a, a) is X / (X + Y) of two
 * Gamma(a) variates (Marsaglia and Tsang), the law numpy samples. */
#include "data/mixup.h"
#include "data/rng.h"

#include "runtime/errors.h"

#include <math.h>
#include <string.h>

int cae_mixup_active(const cae_mixup_cfg *cfg)
{
    return cfg->mixup_alpha > 0 || cfg->cutmix_alpha > 0;
}

int cae_mixup_check(const cae_mixup_cfg *cfg)
{
    if (!(cfg->mixup_alpha >= 0 && cfg->mixup_alpha < 1e6)) {
        cae_errorf("--mixup %g: must be a finite number >= 0", cfg->mixup_alpha);
        return -1;
    }
    if (!(cfg->cutmix_alpha >= 0 && cfg->cutmix_alpha < 1e6)) {
        cae_errorf("--cutmix %g: must be a finite number >= 0", cfg->cutmix_alpha);
        return -1;
    }
    if (!(cfg->prob >= 0 && cfg->prob <= 1)) {
        cae_errorf("--mixup_prob %g: must be in [0, 1]", cfg->prob);
        return -1;
    }
    if (!(cfg->switch_prob >= 0 && cfg->switch_prob <= 1)) {
        cae_errorf("--mixup_switch_prob %g: must be in [0, 1]", cfg->switch_prob);
        return -1;
    }
    if (!(cfg->smoothing >= 0 && cfg->smoothing < 1)) {
        cae_errorf("--smoothing %g: must be in [0, 1)", cfg->smoothing);
        return -1;
    }
    if (cfg->num_classes < 1) {
        cae_errorf("--nb_classes %d: must be >= 1", cfg->num_classes);
        return -1;
    }
    return 0;
}

/* Gamma(a, 1): Marsaglia and Tsang; a < 1 through Gamma(a + 1) U^(1/a). */
static double mx_gamma(cae_rng *r, double a)
{
    double boost = 1.0, d, c;
    if (a < 1.0) {
        boost = pow(1.0 - cae_rng_uniform(r), 1.0 / a);
        a += 1.0;
    }
    d = a - 1.0 / 3.0;
    c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v, u;
        do {
            x = cae_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        u = 1.0 - cae_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return boost * d * v;
    }
}

static double mx_beta(cae_rng *r, double a)
{
    double x = mx_gamma(r, a), y = mx_gamma(r, a);
    return x + y > 0 ? x / (x + y) : (cae_rng_uniform(r) < 0.5 ? 0.0 : 1.0);
}

static int mx_clip(int v, int n)
{
    return v < 0 ? 0 : v > n ? n : v;
}

void cae_cutmix_box(int S, double lam, int cy, int cx, cae_mixup_params *p)
{
    int cut = (int)(S * sqrt(1.0 - lam));
    p->use_cutmix = 1;
    p->yl = mx_clip(cy - cut / 2, S);
    p->yh = mx_clip(cy + cut / 2, S);
    p->xl = mx_clip(cx - cut / 2, S);
    p->xh = mx_clip(cx + cut / 2, S);
    p->lam = 1.0 - (double)((p->yh - p->yl) * (p->xh - p->xl)) / ((double)S * (double)S);
}

void cae_mixup_draw(const cae_mixup_cfg *cfg, uint64_t seed, int S, cae_mixup_params *p)
{
    cae_rng r;
    double lam = 1.0;
    int use_cutmix = 0;
    cae_rng_seed(&r, seed);
    memset(p, 0, sizeof *p);
    /* _params_per_batch */
    if (cae_mixup_active(cfg) && cae_rng_uniform(&r) < cfg->prob) {
        if (cfg->mixup_alpha > 0 && cfg->cutmix_alpha > 0) {
            use_cutmix = cae_rng_uniform(&r) < cfg->switch_prob;
            lam = mx_beta(&r, use_cutmix ? cfg->cutmix_alpha : cfg->mixup_alpha);
        } else if (cfg->mixup_alpha > 0) {
            lam = mx_beta(&r, cfg->mixup_alpha);
        } else {
            use_cutmix = 1;
            lam = mx_beta(&r, cfg->cutmix_alpha);
        }
    }
    p->lam = lam;
    if (lam == 1.0) /* _mix_batch returns before any box */
        return;
    p->use_cutmix = use_cutmix;
    if (use_cutmix) {
        int cy = (int)cae_rng_int(&r, 0, S - 1), cx = (int)cae_rng_int(&r, 0, S - 1);
        cae_cutmix_box(S, lam, cy, cx, p);
    }
}

int cae_mixup_apply_with(const cae_mixup_cfg *cfg, const cae_mixup_params *p, float *images,
                         size_t B, int S, const int32_t *labels, float *targets)
{
    size_t plane = (size_t)S * (size_t)S, K = (size_t)cfg->num_classes;
    size_t img = 3 * plane;
    float lam = (float)p->lam, lam1 = (float)(1.0 - p->lam);
    float off = (float)(cfg->smoothing / (double)cfg->num_classes);
    float on = (float)(1.0 - cfg->smoothing + cfg->smoothing / (double)cfg->num_classes);

    CAE_TRY(cae_mixup_check(cfg));
    if (B % 2 != 0) {
        cae_errorf("mixup: batch size %zu is odd (timm's Mixup needs an even batch)", B);
        return -1;
    }
    for (size_t b = 0; b < B; b++)
        if (labels[b] < 0 || (size_t)labels[b] >= K) {
            cae_errorf("mixup: label %d of sample %zu outside 0..%zu", (int)labels[b], b, K - 1);
            return -1;
        }
    if (p->use_cutmix && !(0 <= p->yl && p->yl <= p->yh && p->yh <= S && 0 <= p->xl &&
                           p->xl <= p->xh && p->xh <= S)) {
        cae_errorf("mixup: cutmix box rows %d..%d, columns %d..%d outside %dx%d", p->yl, p->yh,
                   p->xl, p->xh, S, S);
        return -1;
    }

    /* images: sample b and its partner B-1-b mix from their old values */
    if (p->lam != 1.0 && images != NULL) {
        for (size_t b = 0; b < B / 2; b++) {
            float *x = images + b * img, *y = images + (B - 1 - b) * img;
            if (p->use_cutmix) {
                for (int c = 0; c < 3; c++)
                    for (int row = p->yl; row < p->yh; row++)
                        for (int col = p->xl; col < p->xh; col++) {
                            size_t i = (size_t)c * plane + (size_t)row * (size_t)S + (size_t)col;
                            float t = x[i];
                            x[i] = y[i];
                            y[i] = t;
                        }
            } else {
                /* x_flipped = flip(x) * (1 - lam); x = x * lam + x_flipped */
                for (size_t i = 0; i < img; i++) {
                    float xi = x[i], yi = y[i];
                    float xf = yi * lam1, yf = xi * lam1;
                    float xm = xi * lam, ym = yi * lam;
                    x[i] = xm + xf;
                    y[i] = ym + yf;
                }
            }
        }
    }

    /* mixup_target: y1 * lam + y2 * (1 - lam), one-hot with off/on */
    for (size_t b = 0; b < B; b++) {
        float *t = targets + b * K;
        size_t l1 = (size_t)labels[b], l2 = (size_t)labels[B - 1 - b];
        for (size_t k = 0; k < K; k++) {
            float y1 = k == l1 ? on : off, y2 = k == l2 ? on : off;
            float a = y1 * lam, c = y2 * lam1;
            t[k] = a + c;
        }
    }
    return 0;
}

int cae_mixup_apply(const cae_mixup_cfg *cfg, uint64_t seed, float *images, size_t B, int S,
                    const int32_t *labels, float *targets, double *lam_out)
{
    cae_mixup_params p;
    CAE_TRY(cae_mixup_check(cfg));
    if (B % 2 != 0) {
        cae_errorf("mixup: batch size %zu is odd (timm's Mixup needs an even batch)", B);
        return -1;
    }
    cae_mixup_draw(cfg, seed, S, &p);
    CAE_TRY(cae_mixup_apply_with(cfg, &p, images, B, S, labels, targets));
    if (lam_out != NULL)
        *lam_out = p.lam;
    return 0;
}

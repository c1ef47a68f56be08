/* randaug.c: timm's RandAugment on 8-bit RGB, each op reproducing Pillow
 * (see randaug.h for the policy, the level functions and the fill).
 *
 * Pointwise ops are 256-entry tables per channel, built as ImageOps builds
 * them and applied as Image.point applies them (values clipped to 8 bits).
 * The enhance ops blend with a degenerate image through cae_pil_blend
 * (augment.c). The geometric ops are Image.transform(AFFINE) with a filter:
 * Pillow's ImagingGenericTransform (libImaging/Geometry.c) maps the centre
 * of each output pixel through the matrix, leaves pixels whose source lies
 * outside the picture at the fill color, and interpolates the others from
 * the clamped neighbourhood (bilinear 2 x 2 or Pillow's a = -1 cubic 4 x 4,
 * truncated to 8 bits). */
#include "data/randaug.h"
#include "data/augment_internal.h"

#include "runtime/errors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ---- */

static void ra_defaults(cae_randaug_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->num_layers = 2;
    cfg->magnitude = 10;
    cfg->magnitude_std = 0;
    cfg->increasing = 0;
    cfg->prob = 0.5;
    cfg->magnitude_max = 10;
    cfg->interp = CAE_FILTER_BICUBIC;
    cfg->fill[0] = cfg->fill[1] = cfg->fill[2] = 128;
}

/* A whole number or decimal: strtod accepting no trailing text. */
static int ra_number(const char *spec, const char *sec, const char *val, double *out)
{
    char *end;
    if (*val == '\0' || *val == '-' || *val == '+' || *val == ' ')
        goto bad;
    *out = strtod(val, &end);
    if (*end == '\0' && isfinite(*out))
        return 0;
bad:
    cae_errorf("--aa %s: section '%s' needs a number after its key", spec, sec);
    return -1;
}

int cae_randaug_parse(const char *spec, cae_randaug_cfg *cfg)
{
    char buf[256], *sec, *next;
    int first = 1;
    ra_defaults(cfg);
    if (spec == NULL || *spec == '\0' || strcmp(spec, "none") == 0) {
        cfg->num_layers = 0;
        return 0;
    }
    if (strlen(spec) >= sizeof buf) {
        cae_errorf("--aa: policy string too long");
        return -1;
    }
    strcpy(buf, spec);
    /* sections between dashes; empty ones are skipped, as timm skips them */
    for (sec = buf; sec != NULL; sec = next) {
        size_t klen = 0;
        char key[16];
        double v;
        next = strchr(sec, '-');
        if (next != NULL)
            *next++ = '\0';
        if (*sec == '\0' && !first)
            continue;
        if (first) {
            first = 0;
            if (strcmp(sec, "rand") != 0) {
                cae_errorf("--aa %s: only RandAugment policies ('rand-...') are supported", spec);
                return -1;
            }
            continue;
        }
        /* timm splits each section at its first digit: key, then value */
        while (sec[klen] != '\0' && !(sec[klen] >= '0' && sec[klen] <= '9') && sec[klen] != '.')
            klen++;
        if (klen == 0 || klen >= sizeof key) {
            cae_errorf("--aa %s: section '%s' has no known key", spec, sec);
            return -1;
        }
        memcpy(key, sec, klen);
        key[klen] = '\0';
        CAE_TRY(ra_number(spec, sec, sec + klen, &v));
        if (strcmp(key, "m") == 0) {
            if (v < 0) {
                cae_errorf("--aa %s: magnitude must be >= 0", spec);
                return -1;
            }
            cfg->magnitude = v;
        } else if (strcmp(key, "n") == 0) {
            if (v != floor(v) || v < 0 || v > 100) {
                cae_errorf("--aa %s: n (ops per image) must be a whole number in 0..100", spec);
                return -1;
            }
            cfg->num_layers = (int)v;
        } else if (strcmp(key, "mstd") == 0) {
            cfg->magnitude_std = v;
        } else if (strcmp(key, "mmax") == 0) {
            cfg->magnitude_max = v;
        } else if (strcmp(key, "inc") == 0) {
            if (v != 0 && v != 1) {
                cae_errorf("--aa %s: inc must be 0 or 1", spec);
                return -1;
            }
            cfg->increasing = (int)v;
        } else if (strcmp(key, "p") == 0) {
            if (v > 1) {
                cae_errorf("--aa %s: p (op probability) must be in [0, 1]", spec);
                return -1;
            }
            cfg->prob = v;
        } else if (strcmp(key, "w") == 0) {
            cae_errorf("--aa %s: weighted op choice (w) is not supported", spec);
            return -1;
        } else {
            cae_errorf("--aa %s: unknown section '%s' (known: m, n, mstd, mmax, inc, p)", spec,
                       sec);
            return -1;
        }
    }
    return 0;
}

/* ---- level functions (timm's *_level_to_arg, _MAX_LEVEL = 10) ---- */

double cae_randaug_level(cae_ra_op op, int increasing, double m, int negate)
{
    double sign = negate ? -1.0 : 1.0;
    switch (op) {
    case CAE_RA_ROTATE:
        return sign * ((m / 10.0) * 30.0);
    case CAE_RA_POSTERIZE: {
        int bits = (int)((m / 10.0) * 4);
        return increasing ? 4 - bits : bits;
    }
    case CAE_RA_SOLARIZE: {
        int t = (int)((m / 10.0) * 256);
        return increasing ? 256 - t : t;
    }
    case CAE_RA_SOLARIZE_ADD:
        return (int)((m / 10.0) * 110);
    case CAE_RA_COLOR:
    case CAE_RA_CONTRAST:
    case CAE_RA_BRIGHTNESS:
    case CAE_RA_SHARPNESS:
        if (increasing)
            return 1.0 + sign * ((m / 10.0) * 0.9);
        return (m / 10.0) * 1.8 + 0.1;
    case CAE_RA_SHEAR_X:
    case CAE_RA_SHEAR_Y:
        return sign * ((m / 10.0) * 0.3);
    case CAE_RA_TRANSLATE_X:
    case CAE_RA_TRANSLATE_Y:
        return sign * ((m / 10.0) * 0.45);
    default:
        return 0;
    }
}

/* Does the op take timm's random sign? */
static int ra_signed(cae_ra_op op, int increasing)
{
    switch (op) {
    case CAE_RA_ROTATE:
    case CAE_RA_SHEAR_X:
    case CAE_RA_SHEAR_Y:
    case CAE_RA_TRANSLATE_X:
    case CAE_RA_TRANSLATE_Y:
        return 1;
    case CAE_RA_COLOR:
    case CAE_RA_CONTRAST:
    case CAE_RA_BRIGHTNESS:
    case CAE_RA_SHARPNESS:
        return increasing;
    default:
        return 0;
    }
}

/* ---- pointwise ops: per-channel tables ---- */

static void ra_apply_lut(unsigned char *rgb, size_t n, const int lut[3][256])
{
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            int v = lut[c][rgb[i * 3 + c]];
            /* Image.point clips the table's entries to 8 bits */
            rgb[i * 3 + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

static void ra_histogram(const unsigned char *rgb, size_t n, long hist[3][256])
{
    memset(hist, 0, sizeof(long) * 3 * 256);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            hist[c][rgb[i * 3 + c]]++;
}

/* ImageOps.autocontrast(cutoff=0): stretch [lo, hi] of each channel to [0, 255]. */
static void ra_autocontrast(unsigned char *rgb, size_t n)
{
    long hist[3][256];
    int lut[3][256];
    ra_histogram(rgb, n, hist);
    for (int c = 0; c < 3; c++) {
        int lo = 0, hi = 255;
        while (lo < 256 && hist[c][lo] == 0)
            lo++;
        while (hi >= 0 && hist[c][hi] == 0)
            hi--;
        if (hi <= lo) {
            for (int i = 0; i < 256; i++)
                lut[c][i] = i;
            continue;
        }
        double scale = 255.0 / (hi - lo), offset = -lo * scale;
        for (int i = 0; i < 256; i++) {
            int v = (int)(i * scale + offset); /* Python's int(): toward zero */
            lut[c][i] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
    }
    ra_apply_lut(rgb, n, lut);
}

/* ImageOps.equalize */
static void ra_equalize(unsigned char *rgb, size_t n)
{
    long hist[3][256];
    int lut[3][256];
    ra_histogram(rgb, n, hist);
    for (int c = 0; c < 3; c++) {
        long total = 0, last = 0, step;
        int nonzero = 0;
        for (int i = 0; i < 256; i++)
            if (hist[c][i]) {
                nonzero++;
                total += hist[c][i];
                last = hist[c][i];
            }
        step = nonzero <= 1 ? 0 : (total - last) / 255;
        if (step == 0) {
            for (int i = 0; i < 256; i++)
                lut[c][i] = i;
            continue;
        }
        long acc = step / 2;
        for (int i = 0; i < 256; i++) {
            long v = acc / step;
            lut[c][i] = v > 255 ? 255 : (int)v;
            acc += hist[c][i];
        }
    }
    ra_apply_lut(rgb, n, lut);
}

static void ra_pointwise(cae_ra_op op, double arg, unsigned char *rgb, size_t n)
{
    int lut[3][256];
    int a = (int)arg;
    for (int i = 0; i < 256; i++) {
        int v = i;
        switch (op) {
        case CAE_RA_INVERT:
            v = 255 - i;
            break;
        case CAE_RA_POSTERIZE: /* ImageOps.posterize: keep the a top bits (timm: none at 8) */
            v = a >= 8 ? i : i & ~((1 << (8 - a)) - 1);
            break;
        case CAE_RA_SOLARIZE:
            v = i < a ? i : 255 - i;
            break;
        case CAE_RA_SOLARIZE_ADD: /* timm's solarize_add, threshold 128 */
            v = i < 128 ? (i + a > 255 ? 255 : i + a) : i;
            break;
        default:
            break;
        }
        lut[0][i] = lut[1][i] = lut[2][i] = v;
    }
    ra_apply_lut(rgb, n, lut);
}

/* ---- ImageEnhance ---- */

/* ImageFilter.SMOOTH through ImagingFilter3x3: kernel 1 1 1 / 1 5 1 / 1 1 1
 * divided by 13 in float, sums in float from 0.5 (rounding), truncated and
 * clipped; the first and last rows and columns are copied. */
static void ra_smooth(const unsigned char *in, int w, int h, unsigned char *out)
{
    const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
    size_t stride = (size_t)w * 3;
    if (w < 3 || h < 3) { /* ImagingFilter: smaller than the kernel = copy */
        memcpy(out, in, stride * (size_t)h);
        return;
    }
    memcpy(out, in, stride);
    for (int y = 1; y < h - 1; y++) {
        const unsigned char *rm = in + (size_t)(y - 1) * stride, *r0 = in + (size_t)y * stride,
                            *rp = in + (size_t)(y + 1) * stride;
        unsigned char *o = out + (size_t)y * stride;
        memcpy(o, r0, 3);
        for (int x = 1; x < w - 1; x++)
            for (int c = 0; c < 3; c++) {
                int i = x * 3 + c;
                float ss = 0.5f;
                /* rows y+1, y, y-1 in Pillow's order, three taps each */
                ss += (float)rp[i - 3] * k1 + (float)rp[i] * k1 + (float)rp[i + 3] * k1;
                ss += (float)r0[i - 3] * k1 + (float)r0[i] * k5 + (float)r0[i + 3] * k1;
                ss += (float)rm[i - 3] * k1 + (float)rm[i] * k1 + (float)rm[i + 3] * k1;
                o[i] = ss <= 0.0f ? 0 : ss >= 255.0f ? 255 : (unsigned char)ss;
            }
        memcpy(o + (size_t)(w - 1) * 3, r0 + (size_t)(w - 1) * 3, 3);
    }
    memcpy(out + (size_t)(h - 1) * stride, in + (size_t)(h - 1) * stride, stride);
}

static void ra_enhance(cae_ra_op op, float f, unsigned char *rgb, int w, int h,
                       unsigned char *scratch)
{
    size_t n = (size_t)w * (size_t)h;
    int mean = 0;
    if (op == CAE_RA_CONTRAST) {
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += (uint64_t)cae_pil_luma(rgb + i * 3);
        mean = n ? (int)((double)sum / (double)n + 0.5) : 0;
    }
    if (op == CAE_RA_SHARPNESS)
        ra_smooth(rgb, w, h, scratch);
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = rgb + i * 3;
        int base = op == CAE_RA_COLOR ? cae_pil_luma(p) : op == CAE_RA_CONTRAST ? mean : 0;
        for (int c = 0; c < 3; c++) {
            if (op == CAE_RA_SHARPNESS)
                base = scratch[i * 3 + c];
            p[c] = cae_pil_blend(base, p[c], f);
        }
    }
}

/* ---- geometric ops: Image.transform(AFFINE) with a filter ---- */

static inline int ra_clip(int v, int n)
{
    return v < 0 ? 0 : v < n ? v : n - 1;
}

/* Pillow's BICUBIC macro: the a = -1 cubic through v1..v4 at d */
static inline double ra_cubic(double v1, double v2, double v3, double v4, double d)
{
    double p1 = v2, p2 = -v1 + v3, p3 = 2 * (v1 - v2) + v3 - v4, p4 = -v1 + v2 - v3 + v4;
    return p1 + d * (p2 + d * (p3 + d * p4));
}

/* bicubic_filter32RGB / bilinear_filter32RGB at source point (xin, yin),
 * already known to lie inside the picture. Rows below the first that fall
 * outside repeat the previous row's value (Pillow's quirk, kept). */
static void ra_sample(const unsigned char *in, int w, int h, double xin, double yin, int bicubic,
                      unsigned char out[3])
{
    size_t stride = (size_t)w * 3;
    xin -= 0.5;
    yin -= 0.5;
    int x = (int)floor(xin), y = (int)floor(yin);
    double dx = xin - x, dy = yin - y;
    if (!bicubic) {
        int x0 = ra_clip(x, w) * 3, x1 = ra_clip(x + 1, w) * 3;
        for (int c = 0; c < 3; c++) {
            const unsigned char *r = in + (size_t)ra_clip(y, h) * stride + c;
            double v1 = r[x0] + (r[x1] - r[x0]) * dx, v2 = v1;
            if (y + 1 >= 0 && y + 1 < h) {
                r = in + (size_t)(y + 1) * stride + c;
                v2 = r[x0] + (r[x1] - r[x0]) * dx;
            }
            v1 = v1 + (v2 - v1) * dy;
            out[c] = (unsigned char)v1;
        }
        return;
    }
    x--;
    y--;
    int xs[4];
    for (int k = 0; k < 4; k++)
        xs[k] = ra_clip(x + k, w) * 3;
    for (int c = 0; c < 3; c++) {
        double v[4];
        for (int k = 0; k < 4; k++) {
            int row = y + k;
            if (k == 0)
                row = ra_clip(row, h);
            else if (row < 0 || row >= h) {
                v[k] = v[k - 1];
                continue;
            }
            const unsigned char *r = in + (size_t)row * stride + c;
            /* Pillow's macro sees ints here: the differences are exact */
            int a = r[xs[0]], b = r[xs[1]], cc = r[xs[2]], d = r[xs[3]];
            double p1 = b, p2 = -a + cc, p3 = 2 * (a - b) + cc - d, p4 = -a + b - cc + d;
            v[k] = p1 + dx * (p2 + dx * (p3 + dx * p4));
        }
        double r = ra_cubic(v[0], v[1], v[2], v[3], dy);
        out[c] = r <= 0.0 ? 0 : r >= 255.0 ? 255 : (unsigned char)r;
    }
}

/* out(x, y) = in(a0 x' + a1 y' + a2, a3 x' + a4 y' + a5) at pixel centres
 * x' = x + 0.5, y' = y + 0.5; outside the picture: fill. */
static void ra_affine(const unsigned char *in, int w, int h, const double a[6], int bicubic,
                      const unsigned char fill[3], unsigned char *out)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double xin = x + 0.5, yin = y + 0.5;
            double xs = a[0] * xin + a[1] * yin + a[2];
            double ys = a[3] * xin + a[4] * yin + a[5];
            unsigned char *o = out + ((size_t)y * (size_t)w + (size_t)x) * 3;
            if (xs < 0.0 || xs >= w || ys < 0.0 || ys >= h)
                memcpy(o, fill, 3);
            else
                ra_sample(in, w, h, xs, ys, bicubic, o);
        }
}

/* Python's round(x, 15), correctly rounded through the decimal string */
static double ra_round15(double x)
{
    char s[64];
    snprintf(s, sizeof s, "%.15f", x);
    return strtod(s, NULL);
}

/* Image.rotate(deg) (no expand, centre (w/2, h/2)) as its affine matrix;
 * returns 0 when Pillow takes the copy fast path (angle % 360 == 0). */
static int ra_rotate_matrix(double deg, int w, int h, double a[6])
{
    double ang = fmod(deg, 360.0), cx = w / 2.0, cy = h / 2.0;
    if (ang != 0 && ang < 0)
        ang += 360.0;
    if (ang == 0)
        return 0;
    ang = -(ang * (3.141592653589793 / 180.0));
    a[0] = ra_round15(cos(ang));
    a[1] = ra_round15(sin(ang));
    a[2] = 0.0;
    a[3] = ra_round15(-sin(ang));
    a[4] = ra_round15(cos(ang));
    a[5] = 0.0;
    a[2] = a[0] * -cx + a[1] * -cy + 0.0;
    a[5] = a[3] * -cx + a[4] * -cy + 0.0;
    a[2] += cx;
    a[5] += cy;
    return 1;
}

int cae_randaug_op(cae_ra_op op, double arg, cae_filter interp, const unsigned char fill[3],
                   unsigned char *rgb, int w, int h, unsigned char *scratch)
{
    size_t n = (size_t)w * (size_t)h;
    double a[6] = {1, 0, 0, 0, 1, 0};
    if (w <= 0 || h <= 0 || rgb == NULL || scratch == NULL) {
        cae_errorf("randaug: empty image");
        return -1;
    }
    switch (op) {
    case CAE_RA_AUTOCONTRAST:
        ra_autocontrast(rgb, n);
        return 0;
    case CAE_RA_EQUALIZE:
        ra_equalize(rgb, n);
        return 0;
    case CAE_RA_INVERT:
    case CAE_RA_POSTERIZE:
    case CAE_RA_SOLARIZE:
    case CAE_RA_SOLARIZE_ADD:
        ra_pointwise(op, arg, rgb, n);
        return 0;
    case CAE_RA_COLOR:
    case CAE_RA_CONTRAST:
    case CAE_RA_BRIGHTNESS:
    case CAE_RA_SHARPNESS:
        ra_enhance(op, (float)arg, rgb, w, h, scratch);
        return 0;
    case CAE_RA_ROTATE:
        if (!ra_rotate_matrix(arg, w, h, a))
            return 0;
        break;
    case CAE_RA_SHEAR_X:
        a[1] = arg;
        break;
    case CAE_RA_SHEAR_Y:
        a[3] = arg;
        break;
    case CAE_RA_TRANSLATE_X:
        a[2] = arg * w;
        break;
    case CAE_RA_TRANSLATE_Y:
        a[5] = arg * h;
        break;
    default:
        cae_errorf("randaug: unknown op %d", (int)op);
        return -1;
    }
    if (interp != CAE_FILTER_BILINEAR && interp != CAE_FILTER_BICUBIC) {
        cae_errorf("randaug: geometric ops resample with bilinear or bicubic only (as Pillow's "
                   "transform; check --train_interpolation)");
        return -1;
    }
    ra_affine(rgb, w, h, a, interp == CAE_FILTER_BICUBIC, fill, scratch);
    memcpy(rgb, scratch, n * 3);
    return 0;
}

/* ---- the policy ---- */

int cae_randaug_draw(const cae_randaug_cfg *cfg, cae_rng *r, cae_randaug_step *steps)
{
    int layers = cfg->num_layers;
    if (layers < 0 || layers > 128) {
        cae_errorf("--aa: %d ops per image (at most 128)", layers);
        return -1;
    }
    /* numpy's choice with replacement: all picks first */
    for (int k = 0; k < layers; k++) {
        memset(&steps[k], 0, sizeof steps[k]);
        steps[k].op = (cae_ra_op)cae_rng_int(r, 0, CAE_RA_NUM_OPS - 1);
    }
    for (int k = 0; k < layers; k++) {
        cae_randaug_step *st = &steps[k];
        double m = cfg->magnitude;
        /* AugmentOp.__call__: skip when random() > prob */
        if (cfg->prob < 1.0 && cae_rng_uniform(r) > cfg->prob)
            continue;
        st->applied = 1;
        if (cfg->magnitude_std > 100) /* timm's 'inf': uniform in [0, m] */
            m = cae_rng_range(r, 0, m);
        else if (cfg->magnitude_std > 0)
            m = m + cfg->magnitude_std * cae_rng_normal(r);
        st->magnitude = fmin(cfg->magnitude_max, fmax(0.0, m));
        if (ra_signed(st->op, cfg->increasing))
            st->negate = cae_rng_uniform(r) > 0.5;
        st->arg = cae_randaug_level(st->op, cfg->increasing, st->magnitude, st->negate);
    }
    return 0;
}

int cae_randaug_apply_rng(const cae_randaug_cfg *cfg, cae_rng *r, unsigned char *rgb, int w,
                          int h, unsigned char *scratch)
{
    cae_randaug_step steps[128];
    if (cfg->num_layers <= 0)
        return 0;
    CAE_TRY(cae_randaug_draw(cfg, r, steps));
    for (int k = 0; k < cfg->num_layers; k++)
        if (steps[k].applied)
            CAE_TRY(cae_randaug_op(steps[k].op, steps[k].arg, cfg->interp, cfg->fill, rgb, w, h,
                                   scratch));
    return 0;
}

int cae_randaug_apply(const cae_randaug_cfg *cfg, uint64_t *rng, unsigned char *rgb, int w, int h,
                      unsigned char *scratch)
{
    cae_rng r;
    cae_rng_seed(&r, cae_splitmix64(rng));
    return cae_randaug_apply_rng(cfg, &r, rgb, w, h, scratch);
}

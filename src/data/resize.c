/* resize.c: Pillow's Image.resize for 8-bit RGB, reproduced bit for bit.
 *
 * Every filter but nearest is Pillow's separable convolution
 * (libImaging/Resample.c): per axis, output pixel xx is centred at
 * in0 + (xx + 0.5) * scale in the source; the filter's support widens by the
 * scale when downscaling (antialiasing); the taps that fall inside the image
 * are weighted, normalized to sum 1, then turned into fixed point with 22
 * fraction bits. The horizontal pass runs first (over only the rows the
 * vertical pass will read), then the vertical one; each pass rounds and
 * clips to 8 bits. Nearest is Pillow's affine scale (libImaging/Geometry.c)
 * and an integer box of the output's size is a plain crop, as in Pillow.
 *
 * Pillow keeps the box in single precision: so do we, including the float
 * subtraction in1 - in0 that sets the scale. */
#include "data/augment_internal.h"

#include "runtime/errors.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RS_PRECISION_BITS (32 - 8 - 2)
#define RS_PI 3.14159265358979323846

/* ---- the filters, as Resample.c defines them ---- */

static double rs_box(double x)
{
    return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
}

static double rs_bilinear(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double rs_hamming(double x)
{
    if (x < 0.0)
        x = -x;
    if (x == 0.0)
        return 1.0;
    if (x >= 1.0)
        return 0.0;
    x = x * RS_PI;
    /* Pillow writes the constants as floats: keep their float values */
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double rs_bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double rs_sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x = x * RS_PI;
    return sin(x) / x;
}

static double rs_lanczos(double x)
{
    if (-3.0 <= x && x < 3.0)
        return rs_sinc(x) * rs_sinc(x / 3);
    return 0.0;
}

typedef struct {
    double (*fn)(double);
    double support;
} rs_filter;

static const rs_filter *rs_filter_of(cae_filter f)
{
    static const rs_filter box = {rs_box, 0.5}, bilinear = {rs_bilinear, 1.0},
                           hamming = {rs_hamming, 1.0}, bicubic = {rs_bicubic, 2.0},
                           lanczos = {rs_lanczos, 3.0};
    switch (f) {
    case CAE_FILTER_BOX: return &box;
    case CAE_FILTER_BILINEAR: return &bilinear;
    case CAE_FILTER_HAMMING: return &hamming;
    case CAE_FILTER_BICUBIC: return &bicubic;
    case CAE_FILTER_LANCZOS: return &lanczos;
    case CAE_FILTER_NEAREST: break;
    }
    return NULL;
}

int cae_filter_parse(const char *name, cae_filter *out)
{
    static const struct {
        const char *name;
        cae_filter f;
    } names[] = {{"bicubic", CAE_FILTER_BICUBIC}, {"lanczos", CAE_FILTER_LANCZOS},
                 {"bilinear", CAE_FILTER_BILINEAR}, {"nearest", CAE_FILTER_NEAREST},
                 {"box", CAE_FILTER_BOX}, {"hamming", CAE_FILTER_HAMMING}};
    if (name == NULL) {
        cae_errorf("interpolation: no name given");
        return -1;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].f;
            return 0;
        }
    if (strcmp(name, "random") == 0)
        cae_errorf("interpolation 'random' (timm's random choice per image) is not supported: "
                   "use bicubic, lanczos, bilinear, nearest, box or hamming");
    else
        cae_errorf("unknown interpolation '%s': use bicubic, lanczos, bilinear, nearest, box or "
                   "hamming", name);
    return -1;
}

/* ---- buffers ---- */

/* Grow *p to hold n elements of size elem. */
static int rs_grow(void **p, size_t *cap, size_t n, size_t elem)
{
    void *q;
    if (n <= *cap)
        return 0;
    if (n > SIZE_MAX / elem) {
        cae_errorf("resize: buffer of %zu elements overflows", n);
        return -1;
    }
    q = realloc(*p, n * elem);
    if (q == NULL) {
        cae_errorf("resize: out of memory for %zu bytes (%s:%d)", n * elem, __FILE__, __LINE__);
        return -1;
    }
    *p = q;
    *cap = n;
    return 0;
}

void cae_resize_work_free(cae_resize_work *w)
{
    if (w == NULL)
        return;
    free(w->horiz.bounds);
    free(w->horiz.k);
    free(w->horiz.kd);
    free(w->vert.bounds);
    free(w->vert.k);
    free(w->vert.kd);
    free(w->tmp);
    free(w->xin);
    memset(w, 0, sizeof *w);
}

/* ---- coefficients (precompute_coeffs + normalize_coeffs_8bpc) ---- */

static int32_t rs_fixed(double k)
{
    if (k < 0)
        return (int32_t)(-0.5 + k * (1 << RS_PRECISION_BITS));
    return (int32_t)(0.5 + k * (1 << RS_PRECISION_BITS));
}

static int rs_coeffs(cae_resize_axis *a, int in_size, float in0, float in1, int out_size,
                     const rs_filter *f)
{
    /* the float difference first, as Pillow's float box does */
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    double ss = 1.0 / filterscale;
    double ks = ceil(support) * 2 + 1;
    int ksize;

    if (!(ks <= (double)(INT_MAX / 8))) {
        cae_errorf("resize: filter support %g is too large", support);
        return -1;
    }
    ksize = (int)ks;
    if (rs_grow((void **)&a->bounds, &a->cap_bounds, (size_t)out_size * 2, sizeof(int)) ||
        rs_grow((void **)&a->k, &a->cap_k, (size_t)out_size * (size_t)ksize, sizeof(int32_t)) ||
        rs_grow((void **)&a->kd, &a->cap_kd, (size_t)ksize, sizeof(double)))
        return -1;
    a->ksize = ksize;

    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        /* (int) truncates: Pillow's "round" of these bounds */
        int xmin = (int)(center - support + 0.5);
        int xmax = (int)(center + support + 0.5);
        int32_t *k = a->k + (size_t)xx * (size_t)ksize;
        int x;
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            a->kd[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0)
                a->kd[x] /= ww;
            k[x] = rs_fixed(a->kd[x]);
        }
        for (; x < ksize; x++)
            k[x] = 0;
        a->bounds[xx * 2] = xmin;
        a->bounds[xx * 2 + 1] = xmax;
    }
    return 0;
}

/* Pillow's clip8: the accumulator (with its rounding half already added)
 * shifted down to 8 bits and clamped to 0..255. */
static unsigned char rs_clip8(int64_t ss)
{
    if (ss < 0)
        return 0;
    ss >>= RS_PRECISION_BITS;
    return ss > 255 ? 255 : (unsigned char)ss;
}

/* rows [row0, row0 + rows) of src -> dst (out_w wide, contiguous) */
static void rs_horizontal(const cae_resize_axis *a, const unsigned char *src, size_t stride,
                          int row0, int rows, int out_w, unsigned char *dst)
{
    for (int yy = 0; yy < rows; yy++) {
        const unsigned char *in = src + (size_t)(row0 + yy) * stride;
        unsigned char *out = dst + (size_t)yy * (size_t)out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = a->bounds[xx * 2], n = a->bounds[xx * 2 + 1];
            const int32_t *k = a->k + (size_t)xx * (size_t)a->ksize;
            const unsigned char *p = in + (size_t)xmin * 3;
            int64_t s0 = 1 << (RS_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; x++) {
                s0 += (int64_t)p[x * 3] * k[x];
                s1 += (int64_t)p[x * 3 + 1] * k[x];
                s2 += (int64_t)p[x * 3 + 2] * k[x];
            }
            out[xx * 3] = rs_clip8(s0);
            out[xx * 3 + 1] = rs_clip8(s1);
            out[xx * 3 + 2] = rs_clip8(s2);
        }
    }
}

/* src rows (stride apart, width w) -> dst [out_h][w][3]; bounds relative
 * to src's first row */
static void rs_vertical(const cae_resize_axis *a, const unsigned char *src, size_t stride, int w,
                        int out_h, unsigned char *dst)
{
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = a->bounds[yy * 2], n = a->bounds[yy * 2 + 1];
        const int32_t *k = a->k + (size_t)yy * (size_t)a->ksize;
        unsigned char *out = dst + (size_t)yy * (size_t)w * 3;
        for (int xx = 0; xx < w; xx++) {
            const unsigned char *p = src + (size_t)ymin * stride + (size_t)xx * 3;
            int64_t s0 = 1 << (RS_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int y = 0; y < n; y++, p += stride) {
                s0 += (int64_t)p[0] * k[y];
                s1 += (int64_t)p[1] * k[y];
                s2 += (int64_t)p[2] * k[y];
            }
            out[xx * 3] = rs_clip8(s0);
            out[xx * 3 + 1] = rs_clip8(s1);
            out[xx * 3 + 2] = rs_clip8(s2);
        }
    }
}

/* ImagingResampleInner */
static int rs_convolve(const unsigned char *src, int w, int h, size_t stride, const float box[4],
                       int out_w, int out_h, const rs_filter *f, cae_resize_work *work,
                       unsigned char *out)
{
    int need_h = out_w != w || box[0] != 0 || box[2] != out_w;
    int need_v = out_h != h || box[1] != 0 || box[3] != out_h;
    cae_resize_axis *v = &work->vert;
    int y_first, y_last;

    CAE_TRY(rs_coeffs(v, h, box[1], box[3], out_h, f));
    y_first = v->bounds[0];
    y_last = v->bounds[out_h * 2 - 2] + v->bounds[out_h * 2 - 1];

    if (need_h) {
        int rows = y_last - y_first;
        CAE_TRY(rs_coeffs(&work->horiz, w, box[0], box[2], out_w, f));
        CAE_TRY(rs_grow((void **)&work->tmp, &work->cap_tmp,
                        (size_t)out_w * 3 * (size_t)(rows > 0 ? rows : 1), 1));
        rs_horizontal(&work->horiz, src, stride, y_first, rows, out_w, work->tmp);
        if (!need_v) {
            /* Pillow's need_v is false only for the full height: all rows */
            memcpy(out, work->tmp, (size_t)out_w * 3 * (size_t)out_h);
            return 0;
        }
        for (int i = 0; i < out_h; i++)
            v->bounds[i * 2] -= y_first;
        rs_vertical(v, work->tmp, (size_t)out_w * 3, out_w, out_h, out);
        return 0;
    }
    if (need_v) {
        rs_vertical(v, src, stride, w, out_h, out);
        return 0;
    }
    for (int y = 0; y < h; y++)
        memcpy(out + (size_t)y * (size_t)w * 3, src + (size_t)y * stride, (size_t)w * 3);
    return 0;
}

/* ImagingScaleAffine: nearest neighbour, the source position stepped by
 * repeated addition in double, outside pixels filled with 0. */
static int rs_nearest(const unsigned char *src, int w, int h, size_t stride, const float box[4],
                      int out_w, int out_h, cae_resize_work *work, unsigned char *out)
{
    double ax = (double)(box[2] - box[0]) / out_w;
    double ay = (double)(box[3] - box[1]) / out_h;
    double xo = box[0] + ax * 0.5;
    double yo = box[1] + ay * 0.5;
    int *xin;

    CAE_TRY(rs_grow((void **)&work->xin, &work->cap_xin, (size_t)out_w, sizeof(int)));
    xin = work->xin;
    for (int x = 0; x < out_w; x++) {
        int xi = xo < 0.0 ? -1 : (int)xo;
        xin[x] = (xi >= 0 && xi < w) ? xi : -1;
        xo += ax;
    }
    for (int y = 0; y < out_h; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        unsigned char *o = out + (size_t)y * (size_t)out_w * 3;
        if (yi < 0 || yi >= h) {
            memset(o, 0, (size_t)out_w * 3);
        } else {
            const unsigned char *row = src + (size_t)yi * stride;
            for (int x = 0; x < out_w; x++) {
                if (xin[x] < 0) {
                    o[x * 3] = o[x * 3 + 1] = o[x * 3 + 2] = 0;
                } else {
                    o[x * 3] = row[xin[x] * 3];
                    o[x * 3 + 1] = row[xin[x] * 3 + 1];
                    o[x * 3 + 2] = row[xin[x] * 3 + 2];
                }
            }
        }
        yo += ay;
    }
    return 0;
}

int cae_resize_view(const unsigned char *src, int w, int h, size_t stride, const float box[4],
                    int out_w, int out_h, cae_filter filter, cae_resize_work *work,
                    unsigned char *out)
{
    const rs_filter *f = rs_filter_of(filter);

    if (w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0) {
        cae_errorf("resize: sizes must be positive (image %dx%d, output %dx%d)", w, h, out_w,
                   out_h);
        return -1;
    }
    if (f == NULL && filter != CAE_FILTER_NEAREST) {
        cae_errorf("resize: unknown filter %d", (int)filter);
        return -1;
    }
    /* Pillow's checks, in its order */
    if (!(box[0] >= 0 && box[1] >= 0)) {
        cae_errorf("resize: box offset can't be negative (box %g,%g,%g,%g)", box[0], box[1],
                   box[2], box[3]);
        return -1;
    }
    if (!(box[2] <= w && box[3] <= h)) {
        cae_errorf("resize: box %g,%g,%g,%g exceeds the %dx%d image", box[0], box[1], box[2],
                   box[3], w, h);
        return -1;
    }
    if (!(box[2] - box[0] >= 0 && box[3] - box[1] >= 0)) {
        cae_errorf("resize: box %g,%g,%g,%g is empty", box[0], box[1], box[2], box[3]);
        return -1;
    }
    /* An integer box of the output's size is a crop. */
    if (box[0] - (int)box[0] == 0 && box[2] - box[0] == out_w && box[1] - (int)box[1] == 0 &&
        box[3] - box[1] == out_h) {
        int x0 = (int)box[0], y0 = (int)box[1];
        for (int y = 0; y < out_h; y++)
            memcpy(out + (size_t)y * (size_t)out_w * 3,
                   src + (size_t)(y0 + y) * stride + (size_t)x0 * 3, (size_t)out_w * 3);
        return 0;
    }
    if (filter == CAE_FILTER_NEAREST)
        return rs_nearest(src, w, h, stride, box, out_w, out_h, work, out);
    return rs_convolve(src, w, h, stride, box, out_w, out_h, f, work, out);
}

int cae_resize(const cae_image *src, const double box[4], int out_w, int out_h, cae_filter filter,
               unsigned char *out)
{
    cae_resize_work work;
    float fbox[4];
    int rc;
    if (src == NULL || src->rgb == NULL) {
        cae_errorf("resize: no source image");
        return -1;
    }
    memset(&work, 0, sizeof work);
    for (int i = 0; i < 4; i++)
        fbox[i] = (float)box[i];
    rc = cae_resize_view(src->rgb, src->width, src->height, (size_t)src->width * 3, fbox, out_w,
                         out_h, filter, &work, out);
    cae_resize_work_free(&work);
    return rc;
}

/* test_ops_norm.c: LayerNorm, GELU and the residual stream (layer scale,
 * drop path, add) against plain C references in double.
 *
 * Every device op runs on odd shapes at a non-zero offset with canaries
 * (tu_upload / tu_download); backward ops are checked in overwrite and
 * accumulate modes, with parameter gradients accumulated onto non-zero
 * values. Each reference backward is itself checked once against central
 * finite differences of the reference forward.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "testutil.h"

#define FD_H 1e-5 /* central-difference step, in double */

/* ---- helpers ---- */

static float *rand_f(size_t n, float lo, float hi, unsigned seed)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    tu_random(x, n, lo, hi, seed);
    return x;
}

static double *to_d(const float *x, size_t n)
{
    double *d = malloc(n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static float *alloc_f(size_t n)
{
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

static double *alloc_d(size_t n)
{
    double *x = calloc(n, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

/* want[i] = base[i] + add[i], for checking accumulated results */
static double *plus(const float *base, const double *add, size_t n)
{
    double *w = alloc_d(n);
    for (size_t i = 0; i < n; i++)
        w[i] = (double)base[i] + add[i];
    return w;
}

/* max |a - b| <= tol * max(1, max |b|), in double (finite-difference checks) */
static void assert_close_d(const char *what, const double *got,
                           const double *want, size_t n, double tol)
{
    double scale = 1.0, err = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        const double e = fabs(got[i] - want[i]);
        if (!(e <= err)) { /* also catches NaN */
            err = e;
            at = i;
        }
    }
    ck_assert_msg(err <= tol * scale,
                  "%s: max error %g at %zu (got %g, want %g), tol %g", what,
                  err, at, got[at], want[at], tol * scale);
}

/* sum_i r[i] * y[i]: the scalar loss whose gradient wrt y is r */
static double dot_d(const double *r, const double *y, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += r[i] * y[i];
    return s;
}

/* ---- LayerNorm reference ---- */

/* mean and 1/sqrt(biased variance + eps) of one row */
static void ln_ref_stats(const double *xr, size_t C, double *mean, double *rstd)
{
    double m = 0.0, v = 0.0;
    for (size_t c = 0; c < C; c++)
        m += xr[c];
    m /= (double)C;
    for (size_t c = 0; c < C; c++)
        v += (xr[c] - m) * (xr[c] - m);
    v /= (double)C;
    *mean = m;
    *rstd = 1.0 / sqrt(v + (double)CAE_LN_EPS);
}

static void ln_ref_forward(double *y, double *mean, double *rstd,
                           const double *x, const double *w, const double *b,
                           size_t T, size_t C)
{
    for (size_t t = 0; t < T; t++) {
        const double *xr = x + t * C;
        double m, r;
        ln_ref_stats(xr, C, &m, &r);
        for (size_t c = 0; c < C; c++)
            y[t * C + c] = (xr[c] - m) * r * w[c] + b[c];
        if (mean)
            mean[t] = m;
        if (rstd)
            rstd[t] = r;
    }
}

/* dx, dw, db overwritten (callers add initial values themselves) */
static void ln_ref_backward(double *dx, double *dw, double *db,
                            const double *dy, const double *x, const double *w,
                            size_t T, size_t C)
{
    memset(dw, 0, C * sizeof *dw);
    memset(db, 0, C * sizeof *db);
    for (size_t t = 0; t < T; t++) {
        const double *xr = x + t * C, *dyr = dy + t * C;
        double m, r, mg = 0.0, mgx = 0.0;
        ln_ref_stats(xr, C, &m, &r);
        for (size_t c = 0; c < C; c++) {
            const double xh = (xr[c] - m) * r;
            mg += w[c] * dyr[c];
            mgx += w[c] * dyr[c] * xh;
            dw[c] += dyr[c] * xh;
            db[c] += dyr[c];
        }
        mg /= (double)C;
        mgx /= (double)C;
        for (size_t c = 0; c < C; c++) {
            const double xh = (xr[c] - m) * r;
            dx[t * C + c] = r * (w[c] * dyr[c] - mg - xh * mgx);
        }
    }
}

/* L = sum r*y; perturb one element of v (which is x, w or b) */
static double ln_fd(double *v, size_t i, const double *r, const double *x,
                    const double *w, const double *b, size_t T, size_t C,
                    double *y)
{
    const double keep = v[i];
    v[i] = keep + FD_H;
    ln_ref_forward(y, NULL, NULL, x, w, b, T, C);
    const double lp = dot_d(r, y, T * C);
    v[i] = keep - FD_H;
    ln_ref_forward(y, NULL, NULL, x, w, b, T, C);
    const double lm = dot_d(r, y, T * C);
    v[i] = keep;
    return (lp - lm) / (2.0 * FD_H);
}

START_TEST(test_layernorm_reference_fd)
{
    const size_t T = 3, C = 7;
    float *xf = rand_f(T * C, -1.5f, 2.0f, 11), *wf = rand_f(C, 0.5f, 1.5f, 12),
          *bf = rand_f(C, -0.5f, 0.5f, 13), *rf = rand_f(T * C, -1.0f, 1.0f, 14);
    double *x = to_d(xf, T * C), *w = to_d(wf, C), *b = to_d(bf, C),
           *r = to_d(rf, T * C), *y = alloc_d(T * C);
    double *dx = alloc_d(T * C), *dw = alloc_d(C), *db = alloc_d(C);
    double *nx = alloc_d(T * C), *nw = alloc_d(C), *nb = alloc_d(C);

    ln_ref_backward(dx, dw, db, r, x, w, T, C);
    for (size_t i = 0; i < T * C; i++)
        nx[i] = ln_fd(x, i, r, x, w, b, T, C, y);
    for (size_t i = 0; i < C; i++) {
        nw[i] = ln_fd(w, i, r, x, w, b, T, C, y);
        nb[i] = ln_fd(b, i, r, x, w, b, T, C, y);
    }
    assert_close_d("layernorm ref dx vs fd", dx, nx, T * C, 1e-7);
    assert_close_d("layernorm ref dw vs fd", dw, nw, C, 1e-7);
    assert_close_d("layernorm ref db vs fd", db, nb, C, 1e-7);

    free(xf); free(wf); free(bf); free(rf);
    free(x); free(w); free(b); free(r); free(y);
    free(dx); free(dw); free(db); free(nx); free(nw); free(nb);
}
END_TEST

/* Shapes: odd, below and above 16 (the kernel's vector width), exact
 * multiples of 16, and C = 1 (zero variance: rstd = 1/sqrt(eps)). */
static const struct { size_t T, C; float shift; } ln_shapes[] = {
    {37, 29, 0.0f}, {5, 77, 0.5f}, {3, 48, -1.0f}, {4, 1, 0.0f},
    {2, 16, 3.0f}, {9, 200, 8.0f},
};
#define N_LN_SHAPES (sizeof ln_shapes / sizeof ln_shapes[0])

/* Forward (y, mean, rstd), then backward with the device's saved mean/rstd
 * in mode `accumulate`, against the double reference. */
static void layernorm_case(size_t T, size_t C, float shift, int accumulate,
                           unsigned seed)
{
    cae_ctx *ctx = tu_ctx();
    const size_t n = T * C;
    float *xf = rand_f(n, -2.0f + shift, 2.5f + shift, seed);
    float *wf = rand_f(C, 0.5f, 1.5f, seed + 1);
    float *bf = rand_f(C, -0.5f, 0.5f, seed + 2);
    float *dyf = rand_f(n, -1.0f, 1.0f, seed + 3);
    float *dx0 = rand_f(n, -1.0f, 1.0f, seed + 4);
    float *dw0 = rand_f(C, -1.0f, 1.0f, seed + 5);
    float *db0 = rand_f(C, -1.0f, 1.0f, seed + 6);
    double *x = to_d(xf, n), *w = to_d(wf, C), *b = to_d(bf, C),
           *dy = to_d(dyf, n);
    double *y = alloc_d(n), *mean = alloc_d(T), *rstd = alloc_d(T);
    double *dx = alloc_d(n), *dw = alloc_d(C), *db = alloc_d(C);
    ln_ref_forward(y, mean, rstd, x, w, b, T, C);
    ln_ref_backward(dx, dw, db, dy, x, w, T, C);

    tu_dbuf gx = tu_upload(xf, n), gw = tu_upload(wf, C), gb = tu_upload(bf, C);
    tu_dbuf gy = tu_filled(n, 77.0f), gm = tu_filled(T, 77.0f),
            gr = tu_filled(T, 77.0f);
    tu_dbuf gdy = tu_upload(dyf, n);
    /* overwrite mode must ignore what dx held: start it with garbage */
    tu_dbuf gdx = accumulate ? tu_upload(dx0, n) : tu_filled(n, -55.0f);
    tu_dbuf gdw = tu_upload(dw0, C), gdb = tu_upload(db0, C);

    ck_assert_int_eq(cae_layernorm_forward(ctx, gy.buf, gm.buf, gr.buf, gx.buf,
                                           gw.buf, gb.buf, T, C), 0);
    ck_assert_int_eq(cae_layernorm_backward(ctx, gdx.buf, gdw.buf, gdb.buf,
                                            gdy.buf, gx.buf, gw.buf, gm.buf,
                                            gr.buf, T, C, accumulate), 0);

    float *got = alloc_f(n);
    tu_download(got, &gy);
    tu_assert_close("layernorm y", got, y, n, 2e-5);
    tu_download(got, &gm);
    tu_assert_close("layernorm mean", got, mean, T, 2e-6);
    tu_download(got, &gr);
    tu_assert_close("layernorm rstd", got, rstd, T, 2e-5);

    double *want = accumulate ? plus(dx0, dx, n) : NULL;
    tu_download(got, &gdx);
    tu_assert_close(accumulate ? "layernorm dx (+=)" : "layernorm dx (=)", got,
                    accumulate ? want : dx, n, 5e-5);
    free(want);
    want = plus(dw0, dw, C);
    tu_download(got, &gdw);
    tu_assert_close("layernorm dw (+=)", got, want, C, 5e-5);
    free(want);
    want = plus(db0, db, C);
    tu_download(got, &gdb);
    tu_assert_close("layernorm db (+=)", got, want, C, 5e-5);
    free(want);
    /* inputs are read-only: their canaries and values survive */
    tu_download(got, &gdy);
    ck_assert_mem_eq(got, dyf, n * sizeof *got);
    tu_download(got, &gx);
    ck_assert_mem_eq(got, xf, n * sizeof *got);

    tu_free(&gx); tu_free(&gw); tu_free(&gb); tu_free(&gy); tu_free(&gm);
    tu_free(&gr); tu_free(&gdy); tu_free(&gdx); tu_free(&gdw); tu_free(&gdb);
    free(got); free(xf); free(wf); free(bf); free(dyf); free(dx0); free(dw0);
    free(db0); free(x); free(w); free(b); free(dy); free(y); free(mean);
    free(rstd); free(dx); free(dw); free(db);
}

START_TEST(test_layernorm_overwrite)
{
    layernorm_case(ln_shapes[_i].T, ln_shapes[_i].C, ln_shapes[_i].shift, 0,
                   100 + 10 * (unsigned)_i);
}
END_TEST

START_TEST(test_layernorm_accumulate)
{
    layernorm_case(ln_shapes[_i].T, ln_shapes[_i].C, ln_shapes[_i].shift, 1,
                   300 + 10 * (unsigned)_i);
}
END_TEST

/* ---- GELU reference ---- */

static double gelu_ref(double x)
{
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static double gelu_grad_ref(double x)
{
    const double cdf = 0.5 * (1.0 + erf(x / sqrt(2.0)));
    const double pdf = exp(-0.5 * x * x) / 2.5066282746310002; /* sqrt(2 pi) */
    return cdf + x * pdf;
}

START_TEST(test_gelu_reference_fd)
{
    const size_t n = 41;
    double got[41], want[41];
    for (size_t i = 0; i < n; i++) {
        const double x = -5.0 + 0.25 * (double)i;
        got[i] = gelu_grad_ref(x);
        want[i] = (gelu_ref(x + FD_H) - gelu_ref(x - FD_H)) / (2.0 * FD_H);
    }
    assert_close_d("gelu ref grad vs fd", got, want, n, 1e-8);
}
END_TEST

/* n odd; a few fixed points at the start: 0, the far tails (erf saturates)
 * and a value of each sign near the knee. */
static float *gelu_input(size_t n, unsigned seed)
{
    static const float fixed[] = {0.0f, -10.0f, 10.0f, -30.0f, 30.0f,
                                  -0.75f, 0.75f, -3.5f};
    float *x = rand_f(n, -6.0f, 6.0f, seed);
    memcpy(x, fixed, sizeof fixed);
    return x;
}

START_TEST(test_gelu_forward)
{
    cae_ctx *ctx = tu_ctx();
    const size_t n = 1237;
    float *xf = gelu_input(n, 21), *got = alloc_f(n);
    double *y = alloc_d(n);
    for (size_t i = 0; i < n; i++)
        y[i] = gelu_ref(xf[i]);

    tu_dbuf gx = tu_upload(xf, n), gy = tu_filled(n, 9.0f);
    ck_assert_int_eq(cae_gelu_forward(ctx, gy.buf, gx.buf, n), 0);
    tu_download(got, &gy);
    tu_assert_close("gelu y", got, y, n, 2e-6);
    tu_download(got, &gx);
    ck_assert_mem_eq(got, xf, n * sizeof *got);

    /* in place: y aliases x */
    ck_assert_int_eq(cae_gelu_forward(ctx, gx.buf, gx.buf, n), 0);
    tu_download(got, &gx);
    tu_assert_close("gelu y (in place)", got, y, n, 2e-6);

    tu_free(&gx); tu_free(&gy);
    free(xf); free(got); free(y);
}
END_TEST

/* bias + GELU in one pass, rows of C: C a multiple of 16 (vector groups)
 * and not (scalar loop), with a partial last group */
START_TEST(test_gelu_bias_forward)
{
    cae_ctx *ctx = tu_ctx();
    static const size_t shapes[][2] = {{37, 48}, {29, 21}, {3, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t T = shapes[s][0], C = shapes[s][1], n = T * C;
        float *xf = gelu_input(n, 41 + (unsigned)s), *bf = rand_f(C, -1.0f, 1.0f, 51);
        float *got = alloc_f(n);
        double *x = alloc_d(n), *y = alloc_d(n);
        for (size_t i = 0; i < n; i++) {
            x[i] = (double)xf[i] + (double)bf[i % C];
            y[i] = gelu_ref((float)x[i]);
        }
        tu_dbuf gx = tu_upload(xf, n), gy = tu_filled(n, 9.0f), gb = tu_upload(bf, C);
        ck_assert_int_eq(cae_gelu_bias_forward(ctx, gy.buf, gx.buf, gb.buf, T, C), 0);
        tu_download(got, &gy);
        tu_assert_close("gelu_bias y", got, y, n, 2e-6);
        tu_download(got, &gx);
        tu_assert_close("gelu_bias x + b", got, x, n, 1e-7);
        tu_free(&gx); tu_free(&gy); tu_free(&gb);
        free(xf); free(bf); free(got); free(x); free(y);
    }
}
END_TEST

START_TEST(test_gelu_backward)
{
    cae_ctx *ctx = tu_ctx();
    const size_t n = 1237;
    float *xf = gelu_input(n, 31), *dyf = rand_f(n, -2.0f, 2.0f, 32);
    float *got = alloc_f(n);
    double *dx = alloc_d(n);
    for (size_t i = 0; i < n; i++)
        dx[i] = (double)dyf[i] * gelu_grad_ref(xf[i]);

    tu_dbuf gx = tu_upload(xf, n), gdy = tu_upload(dyf, n),
            gdx = tu_filled(n, -3.0f);
    ck_assert_int_eq(cae_gelu_backward(ctx, gdx.buf, gdy.buf, gx.buf, n), 0);
    tu_download(got, &gdx);
    tu_assert_close("gelu dx", got, dx, n, 5e-6);

    /* in place: dx aliases dy */
    ck_assert_int_eq(cae_gelu_backward(ctx, gdy.buf, gdy.buf, gx.buf, n), 0);
    tu_download(got, &gdy);
    tu_assert_close("gelu dx (in place)", got, dx, n, 5e-6);

    tu_free(&gx); tu_free(&gdy); tu_free(&gdx);
    free(xf); free(dyf); free(got); free(dx);
}
END_TEST

/* ---- residual reference ---- */

/* x[t,c] += g[c] * s[t / rps] * y[t,c]; g, s may be NULL */
static void res_ref_forward(double *x, const double *y, const double *g,
                            const double *s, size_t T, size_t C, size_t rps)
{
    for (size_t t = 0; t < T; t++)
        for (size_t c = 0; c < C; c++)
            x[t * C + c] += (g ? g[c] : 1.0) * (s ? s[t / rps] : 1.0) *
                            y[t * C + c];
}

/* dy overwritten; dg (if not NULL) overwritten with sum_t s * dx * y */
static void res_ref_backward(double *dy, double *dg, const double *dx,
                             const double *y, const double *g, const double *s,
                             size_t T, size_t C, size_t rps)
{
    if (dg)
        memset(dg, 0, C * sizeof *dg);
    for (size_t t = 0; t < T; t++)
        for (size_t c = 0; c < C; c++) {
            const double sv = s ? s[t / rps] : 1.0;
            dy[t * C + c] = (g ? g[c] : 1.0) * sv * dx[t * C + c];
            if (dg)
                dg[c] += sv * dx[t * C + c] * y[t * C + c];
        }
}

/* L = sum r * (x + g*s*y), perturbing one element of v (y or g) */
static double res_fd(double *v, size_t i, const double *r, const double *x0,
                     const double *y, const double *g, const double *s,
                     size_t T, size_t C, size_t rps, double *x)
{
    const double keep = v[i];
    double l[2];
    for (int k = 0; k < 2; k++) {
        v[i] = keep + (k ? -FD_H : FD_H);
        memcpy(x, x0, T * C * sizeof *x);
        res_ref_forward(x, y, g, s, T, C, rps);
        l[k] = dot_d(r, x, T * C);
    }
    v[i] = keep;
    return (l[0] - l[1]) / (2.0 * FD_H);
}

/* per-sample drop-path scales: dropped (0) or kept (1/(1-p), p = 0.1) */
static float *drop_scales(size_t n)
{
    float *s = alloc_f(n);
    for (size_t i = 0; i < n; i++)
        s[i] = (i % 3 == 1) ? 0.0f : 1.0f / 0.9f;
    return s;
}

START_TEST(test_residual_reference_fd)
{
    const size_t T = 6, C = 5, rps = 4; /* last sample is partial */
    float *x0f = rand_f(T * C, -1.0f, 1.0f, 41), *yf = rand_f(T * C, -1.0f, 1.0f, 42),
          *gf = rand_f(C, 0.05f, 0.3f, 43), *rf = rand_f(T * C, -1.0f, 1.0f, 44);
    float sf[2] = {1.0f / 0.9f, 0.5f}; /* not 0: every dg term matters */
    double *x0 = to_d(x0f, T * C), *y = to_d(yf, T * C), *g = to_d(gf, C),
           *r = to_d(rf, T * C), *s = to_d(sf, 2), *x = alloc_d(T * C);
    double *dy = alloc_d(T * C), *dg = alloc_d(C), *ny = alloc_d(T * C),
           *ng = alloc_d(C);

    res_ref_backward(dy, dg, r, y, g, s, T, C, rps);
    for (size_t i = 0; i < T * C; i++)
        ny[i] = res_fd(y, i, r, x0, y, g, s, T, C, rps, x);
    for (size_t i = 0; i < C; i++)
        ng[i] = res_fd(g, i, r, x0, y, g, s, T, C, rps, x);
    assert_close_d("residual ref dy vs fd", dy, ny, T * C, 1e-8);
    assert_close_d("residual ref dg vs fd", dg, ng, C, 1e-8);

    free(x0f); free(yf); free(gf); free(rf);
    free(x0); free(y); free(g); free(r); free(s); free(x);
    free(dy); free(dg); free(ny); free(ng);
}
END_TEST

/* _i selects (has_g, has_s, shape): every combination of the optional
 * scales, on T a multiple of rows_per_sample and not. */
static const struct { size_t T, C, rps; } res_shapes[] = {{35, 29, 7},
                                                          {37, 29, 8}};

static void residual_params(int i, int *has_g, int *has_s, size_t *T,
                            size_t *C, size_t *rps)
{
    *has_g = i & 1;
    *has_s = (i >> 1) & 1;
    *T = res_shapes[i >> 2].T;
    *C = res_shapes[i >> 2].C;
    *rps = res_shapes[i >> 2].rps;
}

START_TEST(test_residual_forward)
{
    cae_ctx *ctx = tu_ctx();
    int has_g, has_s;
    size_t T, C, rps;
    residual_params(_i, &has_g, &has_s, &T, &C, &rps);
    const size_t n = T * C, ns = (T + rps - 1) / rps;
    float *x0f = rand_f(n, -2.0f, 2.0f, 51 + _i), *yf = rand_f(n, -2.0f, 2.0f, 61 + _i);
    float *gf = rand_f(C, 0.05f, 0.3f, 71 + _i), *sf = drop_scales(ns);
    double *x = to_d(x0f, n), *y = to_d(yf, n), *g = to_d(gf, C), *s = to_d(sf, ns);
    res_ref_forward(x, y, has_g ? g : NULL, has_s ? s : NULL, T, C, rps);

    tu_dbuf gx = tu_upload(x0f, n), gy = tu_upload(yf, n);
    tu_dbuf gg = tu_upload(gf, C), gs = tu_upload(sf, ns);
    ck_assert_int_eq(cae_residual_forward(ctx, gx.buf, gy.buf,
                                          has_g ? gg.buf : cae_buf_null(),
                                          has_s ? gs.buf : cae_buf_null(), T,
                                          C, rps), 0);
    float *got = alloc_f(n);
    tu_download(got, &gx);
    tu_assert_close("residual x", got, x, n, 2e-6);
    tu_download(got, &gy);
    ck_assert_mem_eq(got, yf, n * sizeof *got);

    tu_free(&gx); tu_free(&gy); tu_free(&gg); tu_free(&gs);
    free(x0f); free(yf); free(gf); free(sf); free(x); free(y); free(g);
    free(s); free(got);
}
END_TEST

START_TEST(test_residual_backward)
{
    cae_ctx *ctx = tu_ctx();
    int has_g, has_s;
    size_t T, C, rps;
    residual_params(_i, &has_g, &has_s, &T, &C, &rps);
    const size_t n = T * C, ns = (T + rps - 1) / rps;
    float *dxf = rand_f(n, -2.0f, 2.0f, 81 + _i), *yf = rand_f(n, -2.0f, 2.0f, 91 + _i);
    float *gf = rand_f(C, 0.05f, 0.3f, 101 + _i), *sf = drop_scales(ns);
    float *dg0 = rand_f(C, -1.0f, 1.0f, 111 + _i);
    double *dx = to_d(dxf, n), *y = to_d(yf, n), *g = to_d(gf, C), *s = to_d(sf, ns);
    double *dy = alloc_d(n), *dg = alloc_d(C);
    res_ref_backward(dy, dg, dx, y, has_g ? g : NULL, has_s ? s : NULL, T, C,
                     rps);

    tu_dbuf gdx = tu_upload(dxf, n), gy = tu_upload(yf, n);
    tu_dbuf gg = tu_upload(gf, C), gs = tu_upload(sf, ns);
    tu_dbuf gdy = tu_filled(n, 42.0f), gdg = tu_upload(dg0, C);
    cae_buf bg = has_g ? gg.buf : cae_buf_null();
    cae_buf bs = has_s ? gs.buf : cae_buf_null();
    ck_assert_int_eq(cae_residual_backward(ctx, gdy.buf,
                                           has_g ? gdg.buf : cae_buf_null(),
                                           gdx.buf, gy.buf, bg, bs, T, C, rps),
                     0);
    float *got = alloc_f(n);
    tu_download(got, &gdy);
    tu_assert_close("residual dy (=)", got, dy, n, 2e-6);
    tu_download(got, &gdg);
    if (has_g) {
        double *want = plus(dg0, dg, C);
        tu_assert_close("residual dg (+=)", got, want, C, 2e-5);
        free(want);
    } else {
        ck_assert_mem_eq(got, dg0, C * sizeof *got);
    }

    if (has_g) {
        /* a frozen layer scale (g without dg) still scales dy */
        tu_dbuf gdy2 = tu_filled(n, 42.0f);
        ck_assert_int_eq(cae_residual_backward(ctx, gdy2.buf, cae_buf_null(),
                                               gdx.buf, gy.buf, bg, bs, T, C,
                                               rps), 0);
        tu_download(got, &gdy2);
        tu_assert_close("residual dy (frozen g)", got, dy, n, 2e-6);
        tu_free(&gdy2);

        /* dy aliasing dx: dg must still see the incoming dx */
        tu_dbuf galias = tu_upload(dxf, n), gdg2 = tu_upload(dg0, C);
        ck_assert_int_eq(cae_residual_backward(ctx, galias.buf, gdg2.buf,
                                               galias.buf, gy.buf, bg, bs, T,
                                               C, rps), 0);
        tu_download(got, &galias);
        tu_assert_close("residual dy (aliasing dx)", got, dy, n, 2e-6);
        double *want = plus(dg0, dg, C);
        tu_download(got, &gdg2);
        tu_assert_close("residual dg (aliasing)", got, want, C, 2e-5);
        free(want);
        tu_free(&galias);
        tu_free(&gdg2);
    }

    tu_free(&gdx); tu_free(&gy); tu_free(&gg); tu_free(&gs); tu_free(&gdy);
    tu_free(&gdg);
    free(dxf); free(yf); free(gf); free(sf); free(dg0); free(dx); free(y);
    free(g); free(s); free(dy); free(dg); free(got);
}
END_TEST

START_TEST(test_residual_invalid)
{
    cae_ctx *ctx = tu_ctx();
    const size_t T = 4, C = 3;
    tu_dbuf a = tu_filled(T * C, 1.0f), b = tu_filled(T * C, 2.0f),
            g = tu_filled(C, 0.5f), s = tu_filled(T, 1.0f);
    /* dg without g has nothing to be the gradient of */
    ck_assert_int_eq(cae_residual_backward(ctx, a.buf, g.buf, b.buf, b.buf,
                                           cae_buf_null(), cae_buf_null(), T,
                                           C, 1), -1);
    /* rows_per_sample 0 with a drop-path scale */
    ck_assert_int_eq(cae_residual_forward(ctx, a.buf, b.buf, g.buf, s.buf, T,
                                          C, 0), -1);
    ck_assert_int_eq(cae_residual_backward(ctx, a.buf, g.buf, b.buf, b.buf,
                                           g.buf, s.buf, T, C, 0), -1);
    /* nothing was written */
    float got[12];
    tu_download(got, &a);
    for (size_t i = 0; i < T * C; i++)
        ck_assert_float_eq(got[i], 1.0f);
    tu_download(got, &g);
    for (size_t i = 0; i < C; i++)
        ck_assert_float_eq(got[i], 0.5f);
    tu_free(&a); tu_free(&b); tu_free(&g); tu_free(&s);
}
END_TEST

/* Zero sizes are no-ops that succeed and write nothing (an empty NDRange
 * would be an OpenCL error). */
START_TEST(test_empty)
{
    cae_ctx *ctx = tu_ctx();
    tu_dbuf a = tu_filled(4, 1.0f), b = tu_filled(4, 2.0f);
    cae_buf n = cae_buf_null();
    ck_assert_int_eq(cae_layernorm_forward(ctx, a.buf, a.buf, a.buf, b.buf,
                                           b.buf, b.buf, 0, 4), 0);
    ck_assert_int_eq(cae_layernorm_forward(ctx, a.buf, a.buf, a.buf, b.buf,
                                           b.buf, b.buf, 4, 0), 0);
    ck_assert_int_eq(cae_layernorm_backward(ctx, a.buf, a.buf, a.buf, b.buf,
                                            b.buf, b.buf, b.buf, b.buf, 0, 4,
                                            0), 0);
    ck_assert_int_eq(cae_gelu_forward(ctx, a.buf, b.buf, 0), 0);
    ck_assert_int_eq(cae_gelu_backward(ctx, a.buf, b.buf, b.buf, 0), 0);
    ck_assert_int_eq(cae_residual_forward(ctx, a.buf, b.buf, n, n, 0, 4, 1), 0);
    ck_assert_int_eq(cae_residual_backward(ctx, a.buf, n, b.buf, b.buf, n, n,
                                           4, 0, 1), 0);
    ck_assert_int_eq(cae_add(ctx, a.buf, b.buf, b.buf, 0), 0);
    float got[4];
    tu_download(got, &a);
    for (size_t i = 0; i < 4; i++)
        ck_assert_float_eq(got[i], 1.0f);
    tu_free(&a);
    tu_free(&b);
}
END_TEST

START_TEST(test_add)
{
    cae_ctx *ctx = tu_ctx();
    const size_t n = 1237;
    float *af = rand_f(n, -3.0f, 3.0f, 121), *bf = rand_f(n, -3.0f, 3.0f, 122);
    float *got = alloc_f(n);
    double *want = alloc_d(n);
    for (size_t i = 0; i < n; i++)
        want[i] = (double)af[i] + (double)bf[i];

    tu_dbuf ga = tu_upload(af, n), gb = tu_upload(bf, n), go = tu_filled(n, 5.0f);
    ck_assert_int_eq(cae_add(ctx, go.buf, ga.buf, gb.buf, n), 0);
    tu_download(got, &go);
    tu_assert_close("add", got, want, n, 1e-7);

    /* out aliasing a, then out aliasing b (b += a again) */
    ck_assert_int_eq(cae_add(ctx, ga.buf, ga.buf, gb.buf, n), 0);
    tu_download(got, &ga);
    tu_assert_close("add (out = a)", got, want, n, 1e-7);
    ck_assert_int_eq(cae_add(ctx, gb.buf, go.buf, gb.buf, n), 0);
    for (size_t i = 0; i < n; i++)
        want[i] += (double)bf[i];
    tu_download(got, &gb);
    tu_assert_close("add (out = b)", got, want, n, 1e-7);

    tu_free(&ga); tu_free(&gb); tu_free(&go);
    free(af); free(bf); free(got); free(want);
}
END_TEST

static Suite *ops_norm_suite(void)
{
    Suite *s = suite_create("ops_norm");
    TCase *tc = tcase_create("layernorm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_layernorm_reference_fd);
    tcase_add_loop_test(tc, test_layernorm_overwrite, 0, (int)N_LN_SHAPES);
    tcase_add_loop_test(tc, test_layernorm_accumulate, 0, (int)N_LN_SHAPES);
    suite_add_tcase(s, tc);

    tc = tcase_create("gelu");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gelu_reference_fd);
    tcase_add_test(tc, test_gelu_forward);
    tcase_add_test(tc, test_gelu_bias_forward);
    tcase_add_test(tc, test_gelu_backward);
    suite_add_tcase(s, tc);

    tc = tcase_create("residual");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_residual_reference_fd);
    tcase_add_loop_test(tc, test_residual_forward, 0, 8);
    tcase_add_loop_test(tc, test_residual_backward, 0, 8);
    tcase_add_test(tc, test_residual_invalid);
    tcase_add_test(tc, test_add);
    tcase_add_test(tc, test_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ops_norm_suite());
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

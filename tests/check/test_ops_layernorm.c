/* test_ops_layernorm.c: LayerNorm (src/ops/layernorm.c) against a plain C
 * reference in double.
 *
 * Forward and backward run on odd shapes at a non-zero offset with canaries
 * (tu_upload / tu_download); the backward in overwrite and accumulate modes,
 * with the parameter gradients accumulated onto non-zero values. The
 * reference backward is checked once against central finite differences of
 * the reference forward.
 */
#include "tests/common/testutil.h"

#include "ops/ops.h"

#include <math.h>
#include <string.h>

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

/* L = sum r * layernorm(x; w, b): its gradient wrt y is r */
typedef struct {
    double *x, *w, *b, *r, *y;
    size_t T, C;
} ln_fd;

static double ln_loss(void *state)
{
    ln_fd *s = state;
    ln_ref_forward(s->y, NULL, NULL, s->x, s->w, s->b, s->T, s->C);
    return tu_dot(s->r, s->y, s->T * s->C);
}

START_TEST(test_layernorm_reference_fd)
{
    const size_t T = 3, C = 7;
    ln_fd s = {tu_to_double(tu_frand(T * C, -1.5f, 2.0f, 11), T * C),
               tu_to_double(tu_frand(C, 0.5f, 1.5f, 12), C),
               tu_to_double(tu_frand(C, -0.5f, 0.5f, 13), C),
               tu_to_double(tu_frand(T * C, -1.0f, 1.0f, 14), T * C), tu_dvec(T * C), T, C};
    double *dx = tu_dvec(T * C), *dw = tu_dvec(C), *db = tu_dvec(C);
    double *nx = tu_dvec(T * C), *nw = tu_dvec(C), *nb = tu_dvec(C);

    ln_ref_backward(dx, dw, db, s.r, s.x, s.w, T, C);
    tu_fd_grad(nx, ln_loss, &s, s.x, T * C);
    tu_fd_grad(nw, ln_loss, &s, s.w, C);
    tu_fd_grad(nb, ln_loss, &s, s.b, C);
    tu_assert_close_d("layernorm ref dx vs fd", dx, nx, T * C, 1e-7);
    tu_assert_close_d("layernorm ref dw vs fd", dw, nw, C, 1e-7);
    tu_assert_close_d("layernorm ref db vs fd", db, nb, C, 1e-7);
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
    float *xf = tu_frand(n, -2.0f + shift, 2.5f + shift, seed);
    float *wf = tu_frand(C, 0.5f, 1.5f, seed + 1);
    float *bf = tu_frand(C, -0.5f, 0.5f, seed + 2);
    float *dyf = tu_frand(n, -1.0f, 1.0f, seed + 3);
    float *dx0 = tu_frand(n, -1.0f, 1.0f, seed + 4);
    float *dw0 = tu_frand(C, -1.0f, 1.0f, seed + 5);
    float *db0 = tu_frand(C, -1.0f, 1.0f, seed + 6);
    double *x = tu_to_double(xf, n), *w = tu_to_double(wf, C), *b = tu_to_double(bf, C),
           *dy = tu_to_double(dyf, n);
    double *y = tu_dvec(n), *mean = tu_dvec(T), *rstd = tu_dvec(T);
    double *dx = tu_dvec(n), *dw = tu_dvec(C), *db = tu_dvec(C);
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

    float *got = tu_fvec(n);
    tu_expect("layernorm y", &gy, y, 2e-5);
    tu_expect("layernorm mean", &gm, mean, 2e-6);
    tu_expect("layernorm rstd", &gr, rstd, 2e-5);
    tu_expect(accumulate ? "layernorm dx (+=)" : "layernorm dx (=)", &gdx,
              accumulate ? tu_plus(dx0, dx, n) : dx, 5e-5);
    tu_expect("layernorm dw (+=)", &gdw, tu_plus(dw0, dw, C), 5e-5);
    tu_expect("layernorm db (+=)", &gdb, tu_plus(db0, db, C), 5e-5);
    /* inputs are read-only: their canaries and values survive */
    tu_download(got, &gdy);
    ck_assert_mem_eq(got, dyf, n * sizeof *got);
    tu_download(got, &gx);
    ck_assert_mem_eq(got, xf, n * sizeof *got);

    tu_free(&gx); tu_free(&gw); tu_free(&gb); tu_free(&gy); tu_free(&gm);
    tu_free(&gr); tu_free(&gdy); tu_free(&gdx); tu_free(&gdw); tu_free(&gdb);
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

/* Zero sizes are no-ops that succeed and write nothing (an empty NDRange
 * would be an OpenCL error). */
START_TEST(test_layernorm_empty)
{
    cae_ctx *ctx = tu_ctx();
    tu_dbuf a = tu_filled(4, 1.0f), b = tu_filled(4, 2.0f);
    ck_assert_int_eq(cae_layernorm_forward(ctx, a.buf, a.buf, a.buf, b.buf,
                                           b.buf, b.buf, 0, 4), 0);
    ck_assert_int_eq(cae_layernorm_forward(ctx, a.buf, a.buf, a.buf, b.buf,
                                           b.buf, b.buf, 4, 0), 0);
    ck_assert_int_eq(cae_layernorm_backward(ctx, a.buf, a.buf, a.buf, b.buf,
                                            b.buf, b.buf, b.buf, b.buf, 0, 4,
                                            0), 0);
    tu_expect_filled("layernorm of nothing", &a, 1.0f);
    tu_free(&a);
    tu_free(&b);
}
END_TEST

static Suite *ops_layernorm_suite(void)
{
    Suite *s = suite_create("ops_layernorm");
    TCase *tc = tu_tcase(s, "layernorm", 120);
    tcase_add_test(tc, test_layernorm_reference_fd);
    tcase_add_loop_test(tc, test_layernorm_overwrite, 0, (int)N_LN_SHAPES);
    tcase_add_loop_test(tc, test_layernorm_accumulate, 0, (int)N_LN_SHAPES);
    tcase_add_test(tc, test_layernorm_empty);
    return s;
}

TU_MAIN(ops_layernorm_suite)

/* test_ops_residual.c: the residual stream (src/ops/residual.c): the add
 * with layer scale and per-sample drop-path scales, its backward, and the
 * plain elementwise add, against plain C references in double.
 *
 * Every combination of the optional scales, on T a multiple of
 * rows_per_sample and not, at a non-zero offset with canaries; the layer
 * scale's gradient accumulated onto non-zero values; aliasing and the
 * refused argument combinations. The reference backward is checked once
 * against central finite differences of the reference forward.
 */
#include "tests/common/testutil.h"

#include "ops/ops.h"

#include <string.h>

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

/* L = sum r * (x0 + g*s*y) */
typedef struct {
    double *x0, *y, *g, *s, *r, *x;
    size_t T, C, rps;
} res_fd;

static double res_loss(void *state)
{
    res_fd *f = state;
    memcpy(f->x, f->x0, f->T * f->C * sizeof *f->x);
    res_ref_forward(f->x, f->y, f->g, f->s, f->T, f->C, f->rps);
    return tu_dot(f->r, f->x, f->T * f->C);
}

/* per-sample drop-path scales: dropped (0) or kept (1/(1-p), p = 0.1) */
static float *drop_scales(size_t n)
{
    float *s = tu_fvec(n);
    for (size_t i = 0; i < n; i++)
        s[i] = (i % 3 == 1) ? 0.0f : 1.0f / 0.9f;
    return s;
}

START_TEST(test_residual_reference_fd)
{
    const size_t T = 6, C = 5, rps = 4; /* last sample is partial */
    float sf[2] = {1.0f / 0.9f, 0.5f}; /* not 0: every dg term matters */
    res_fd f = {tu_to_double(tu_frand(T * C, -1.0f, 1.0f, 41), T * C),
                tu_to_double(tu_frand(T * C, -1.0f, 1.0f, 42), T * C),
                tu_to_double(tu_frand(C, 0.05f, 0.3f, 43), C),
                tu_to_double(sf, 2),
                tu_to_double(tu_frand(T * C, -1.0f, 1.0f, 44), T * C),
                tu_dvec(T * C), T, C, rps};
    double *dy = tu_dvec(T * C), *dg = tu_dvec(C), *ny = tu_dvec(T * C), *ng = tu_dvec(C);

    res_ref_backward(dy, dg, f.r, f.y, f.g, f.s, T, C, rps);
    tu_fd_grad(ny, res_loss, &f, f.y, T * C);
    tu_fd_grad(ng, res_loss, &f, f.g, C);
    tu_assert_close_d("residual ref dy vs fd", dy, ny, T * C, 1e-8);
    tu_assert_close_d("residual ref dg vs fd", dg, ng, C, 1e-8);
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
    float *x0f = tu_frand(n, -2.0f, 2.0f, 51 + _i), *yf = tu_frand(n, -2.0f, 2.0f, 61 + _i);
    float *gf = tu_frand(C, 0.05f, 0.3f, 71 + _i), *sf = drop_scales(ns);
    double *x = tu_to_double(x0f, n), *y = tu_to_double(yf, n), *g = tu_to_double(gf, C),
           *s = tu_to_double(sf, ns);
    res_ref_forward(x, y, has_g ? g : NULL, has_s ? s : NULL, T, C, rps);

    tu_dbuf gx = tu_upload(x0f, n), gy = tu_upload(yf, n);
    tu_dbuf gg = tu_upload(gf, C), gs = tu_upload(sf, ns);
    ck_assert_int_eq(cae_residual_forward(ctx, gx.buf, gy.buf,
                                          has_g ? gg.buf : cae_buf_null(),
                                          has_s ? gs.buf : cae_buf_null(), T,
                                          C, rps), 0);
    float *got = tu_fvec(n);
    tu_expect("residual x", &gx, x, 2e-6);
    tu_download(got, &gy);
    ck_assert_mem_eq(got, yf, n * sizeof *got);

    tu_free(&gx); tu_free(&gy); tu_free(&gg); tu_free(&gs);
}
END_TEST

START_TEST(test_residual_backward)
{
    cae_ctx *ctx = tu_ctx();
    int has_g, has_s;
    size_t T, C, rps;
    residual_params(_i, &has_g, &has_s, &T, &C, &rps);
    const size_t n = T * C, ns = (T + rps - 1) / rps;
    float *dxf = tu_frand(n, -2.0f, 2.0f, 81 + _i), *yf = tu_frand(n, -2.0f, 2.0f, 91 + _i);
    float *gf = tu_frand(C, 0.05f, 0.3f, 101 + _i), *sf = drop_scales(ns);
    float *dg0 = tu_frand(C, -1.0f, 1.0f, 111 + _i);
    double *dx = tu_to_double(dxf, n), *y = tu_to_double(yf, n), *g = tu_to_double(gf, C),
           *s = tu_to_double(sf, ns);
    double *dy = tu_dvec(n), *dg = tu_dvec(C);
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
    float *got = tu_fvec(n);
    tu_expect("residual dy (=)", &gdy, dy, 2e-6);
    if (has_g) {
        tu_expect("residual dg (+=)", &gdg, tu_plus(dg0, dg, C), 2e-5);
    } else {
        tu_download(got, &gdg);
        ck_assert_mem_eq(got, dg0, C * sizeof *got);
    }

    if (has_g) {
        /* a frozen layer scale (g without dg) still scales dy */
        tu_dbuf gdy2 = tu_filled(n, 42.0f);
        ck_assert_int_eq(cae_residual_backward(ctx, gdy2.buf, cae_buf_null(),
                                               gdx.buf, gy.buf, bg, bs, T, C,
                                               rps), 0);
        tu_expect("residual dy (frozen g)", &gdy2, dy, 2e-6);
        tu_free(&gdy2);

        /* dy aliasing dx: dg must still see the incoming dx */
        tu_dbuf galias = tu_upload(dxf, n), gdg2 = tu_upload(dg0, C);
        ck_assert_int_eq(cae_residual_backward(ctx, galias.buf, gdg2.buf,
                                               galias.buf, gy.buf, bg, bs, T,
                                               C, rps), 0);
        tu_expect("residual dy (aliasing dx)", &galias, dy, 2e-6);
        tu_expect("residual dg (aliasing)", &gdg2, tu_plus(dg0, dg, C), 2e-5);
        tu_free(&galias);
        tu_free(&gdg2);
    }

    tu_free(&gdx); tu_free(&gy); tu_free(&gg); tu_free(&gs); tu_free(&gdy);
    tu_free(&gdg);
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
    tu_expect_filled("residual refused: x", &a, 1.0f);
    tu_expect_filled("residual refused: g", &g, 0.5f);
    tu_free(&a); tu_free(&b); tu_free(&g); tu_free(&s);
}
END_TEST

/* Zero sizes are no-ops that succeed and write nothing (an empty NDRange
 * would be an OpenCL error). */
START_TEST(test_residual_empty)
{
    cae_ctx *ctx = tu_ctx();
    tu_dbuf a = tu_filled(4, 1.0f), b = tu_filled(4, 2.0f);
    cae_buf n = cae_buf_null();
    ck_assert_int_eq(cae_residual_forward(ctx, a.buf, b.buf, n, n, 0, 4, 1), 0);
    ck_assert_int_eq(cae_residual_backward(ctx, a.buf, n, b.buf, b.buf, n, n,
                                           4, 0, 1), 0);
    ck_assert_int_eq(cae_add(ctx, a.buf, b.buf, b.buf, 0), 0);
    tu_expect_filled("residual of nothing", &a, 1.0f);
    tu_free(&a);
    tu_free(&b);
}
END_TEST

START_TEST(test_add)
{
    cae_ctx *ctx = tu_ctx();
    const size_t n = 1237;
    float *af = tu_frand(n, -3.0f, 3.0f, 121), *bf = tu_frand(n, -3.0f, 3.0f, 122);
    double *want = tu_dvec(n);
    for (size_t i = 0; i < n; i++)
        want[i] = (double)af[i] + (double)bf[i];

    tu_dbuf ga = tu_upload(af, n), gb = tu_upload(bf, n), go = tu_filled(n, 5.0f);
    ck_assert_int_eq(cae_add(ctx, go.buf, ga.buf, gb.buf, n), 0);
    tu_expect("add", &go, want, 1e-7);

    /* out aliasing a, then out aliasing b (b += a again) */
    ck_assert_int_eq(cae_add(ctx, ga.buf, ga.buf, gb.buf, n), 0);
    tu_expect("add (out = a)", &ga, want, 1e-7);
    ck_assert_int_eq(cae_add(ctx, gb.buf, go.buf, gb.buf, n), 0);
    for (size_t i = 0; i < n; i++)
        want[i] += (double)bf[i];
    tu_expect("add (out = b)", &gb, want, 1e-7);

    tu_free(&ga); tu_free(&gb); tu_free(&go);
}
END_TEST

static Suite *ops_residual_suite(void)
{
    Suite *s = suite_create("ops_residual");
    TCase *tc = tu_tcase(s, "residual", 120);
    tcase_add_test(tc, test_residual_reference_fd);
    tcase_add_loop_test(tc, test_residual_forward, 0, 8);
    tcase_add_loop_test(tc, test_residual_backward, 0, 8);
    TU_ADD_TESTS(tc, test_residual_invalid, test_add, test_residual_empty);
    return s;
}

TU_MAIN(ops_residual_suite)

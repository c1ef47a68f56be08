/* test_attentive.c: the probes' heads and optimizers against PyTorch
 * (tests/fixtures/eval, written by tools/reference/eval_reference.py; torch
 * in float64, ours in float32, relative L2 per tensor):
 * BatchNorm1d without affine (training forward with running statistics,
 * backward, evaluation forward) for both probes' eps, the official LARS
 * step, torch.optim.SGD with momentum (Nesterov and plain) under the
 * official weight-decay groups, and the attentive probe's trainable part
 * (query token, the three LayerNorms, q/k/v/proj, BatchNorm, head: loss,
 * logits, every parameter gradient, running statistics, evaluation logits).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/attentive.h"
#include "tests/common/fixture.h"
#include "eval/lars.h"
#include "ops/batchnorm.h"
#include "safetensors/safetensors.h"
#include "eval/sgd.h"
#include "tests/common/testutil.h"

#define REL_TOL 1e-5

/* the F32 tensor name, with n elements */
static const float *fx(const cae_st_file *f, const char *name, size_t n)
{
    return tu_fx_f32s(f, n, "%s", name);
}

static double l2(const float *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}

/* ||got - want|| <= tol * scale, scale = ||want|| unless given (> 0) */
static void assert_rel(const char *what, const float *got, const float *want, size_t n, double tol,
                       double scale)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
    d = sqrt(d);
    if (scale <= 0)
        scale = l2(want, n);
    ck_assert_msg(scale > 0, "%s: the reference is all zeros", what);
    ck_assert_msg(d <= tol * scale, "%s: relative L2 error %.3g > %.3g", what, d / scale, tol);
}

/* ---- BatchNorm1d(affine=False) ---- */

START_TEST(test_bn_fixture)
{
    const size_t B = 12, C = 7;
    const char *cases[] = {"eps6", "eps5"};
    const float eps[] = {1e-6f, 1e-5f};
    cae_st_file f;
    cae_ctx *ctx = tu_ctx();
    tu_fx_read(&f, "tests/fixtures/eval/bn.safetensors");
    for (int c = 0; c < 2; c++) {
        char name[64];
        float y[12 * 7], dx[12 * 7], rm[7], rv[7], ye[12 * 7];
        tu_dbuf x = tu_upload(fx(&f, "x", B * C), B * C), dy = tu_upload(fx(&f, "dy", B * C), B * C);
        tu_dbuf yb = tu_filled(B * C, 0), dxb = tu_filled(B * C, 0), mean = tu_filled(C, 0);
        tu_dbuf rstd = tu_filled(C, 0), rmb = tu_filled(C, 0), rvb = tu_filled(C, 1);
        ck_assert_int_eq(cae_batchnorm_forward_train(ctx, yb.buf, mean.buf, rstd.buf, rmb.buf, rvb.buf, x.buf, B,
                                                     C, eps[c], CAE_BN_MOMENTUM), 0);
        ck_assert_int_eq(cae_batchnorm_backward(ctx, dxb.buf, dy.buf, x.buf, mean.buf, rstd.buf, B, C), 0);
        tu_download(y, &yb);
        tu_download(dx, &dxb);
        tu_download(rm, &rmb);
        tu_download(rv, &rvb);
        ck_assert_int_eq(cae_batchnorm_forward_eval(ctx, yb.buf, rmb.buf, rvb.buf, x.buf, B, C, eps[c]), 0);
        tu_download(ye, &yb);
#define CHECK(got, key, n)                                                                         \
    (snprintf(name, sizeof name, "%s/%s", cases[c], key),                                          \
     assert_rel(name, got, fx(&f, name, n), n, REL_TOL, 0))
        CHECK(y, "y", B * C);
        CHECK(dx, "dx", B * C);
        CHECK(rm, "running_mean", C);
        CHECK(rv, "running_var", C);
        CHECK(ye, "y_eval", B * C);
#undef CHECK
        tu_free(&x);
        tu_free(&dy);
        tu_free(&yb);
        tu_free(&dxb);
        tu_free(&mean);
        tu_free(&rstd);
        tu_free(&rmb);
        tu_free(&rvb);
    }
    cae_st_free(&f);
}
END_TEST

/* ---- LARS ---- */

START_TEST(test_lars_fixture)
{
    const char *names[] = {"head.weight", "head.bias"};
    const size_t numel[] = {40, 5};
    const int ndim[] = {2, 1};
    const double lrs[] = {0.3, 0.2};
    float p[2][40], mu[2][40] = {{0}};
    cae_st_file f;
    char key[128];
    tu_fx_read(&f, "tests/fixtures/eval/lars.safetensors");
    for (int t = 0; t < 2; t++) {
        snprintf(key, sizeof key, "param/%s", names[t]);
        memcpy(p[t], fx(&f, key, numel[t]), numel[t] * 4);
    }
    for (int k = 0; k < 2; k++) {
        cae_lars o;
        cae_lars_defaults(&o, lrs[k]);
        o.weight_decay = 0.05;
        for (int t = 0; t < 2; t++) {
            snprintf(key, sizeof key, "grad/%d/%s", k, names[t]);
            cae_lars_step(&o, p[t], fx(&f, key, numel[t]), mu[t], numel[t], ndim[t]);
            snprintf(key, sizeof key, "after/%d/param/%s", k, names[t]);
            assert_rel(key, p[t], fx(&f, key, numel[t]), numel[t], REL_TOL, 0);
            snprintf(key, sizeof key, "after/%d/mu/%s", k, names[t]);
            assert_rel(key, mu[t], fx(&f, key, numel[t]), numel[t], REL_TOL, 0);
        }
    }
    cae_st_free(&f);
}
END_TEST

/* ---- SGD with momentum ---- */

START_TEST(test_sgd_fixture)
{
    const char *names[] = {"query_token", "cross_attn.q.weight", "cross_attn.q_bias", "head.bias"};
    const size_t numel[] = {6, 36, 6, 3};
    const int decay[] = {1, 1, 0, 0}; /* 2+ dims and not a bias */
    const double lrs[] = {0.5, 0.3, 0.1};
    const char *runs[] = {"nesterov", "plain"};
    cae_st_file f;
    char key[128];
    tu_fx_read(&f, "tests/fixtures/eval/sgd.safetensors");
    for (int r = 0; r < 2; r++) {
        float p[4][36], buf[4][36];
        cae_sgd o;
        memset(buf, 0, sizeof buf);
        ck_assert_int_eq(cae_sgd_parse(r == 0 ? "sgd" : "momentum", &o), 0);
        o.momentum = 0.9;
        for (int t = 0; t < 4; t++) {
            snprintf(key, sizeof key, "param/%s", names[t]);
            memcpy(p[t], fx(&f, key, numel[t]), numel[t] * 4);
        }
        for (int k = 0; k < 3; k++) {
            o.lr = lrs[k];
            for (int t = 0; t < 4; t++) {
                snprintf(key, sizeof key, "grad/%d/%s", k, names[t]);
                cae_sgd_step(&o, p[t], fx(&f, key, numel[t]), buf[t], numel[t],
                             decay[t] ? 0.05 : 0.0);
                snprintf(key, sizeof key, "%s/%d/param/%s", runs[r], k, names[t]);
                assert_rel(key, p[t], fx(&f, key, numel[t]), numel[t], REL_TOL, 0);
                snprintf(key, sizeof key, "%s/%d/buf/%s", runs[r], k, names[t]);
                assert_rel(key, buf[t], fx(&f, key, numel[t]), numel[t], REL_TOL, 0);
            }
        }
    }
    cae_st_free(&f);
}
END_TEST

START_TEST(test_sgd_parse)
{
    cae_sgd o;
    ck_assert_int_eq(cae_sgd_parse("nesterov", &o), 0);
    ck_assert_int_eq(o.nesterov, 1);
    ck_assert_int_eq(cae_sgd_parse("momentum", &o), 0);
    ck_assert_int_eq(o.nesterov, 0);
    ck_assert_int_eq(cae_sgd_parse("adamw", &o), -1);
    ck_assert_int_eq(cae_sgd_parse(NULL, &o), -1);
}
END_TEST

/* ---- the attentive head ---- */

START_TEST(test_attentive_fixture)
{
    const size_t B = 5, T = 7, D = 12, H = 3, K = 4;
    cae_attentive a;
    cae_st_file f;
    float *host, *grads, logits[5 * 4], rm[12], rv[12], loss_f;
    double loss;
    char key[160];
    int scale_of[CAE_ATT_NPARAMS];
    for (int i = 0; i < CAE_ATT_NPARAMS; i++)
        scale_of[i] = -1;
    /* a shared shift of all keys cancels in the softmax */
    scale_of[CAE_ATT_NORM_K_B] = CAE_ATT_NORM_K_W;
    /* a shift of every value (norm1_v.bias, v_bias) or of the block output
     * (proj.bias) shifts f by the same vector for every image of the batch,
     * which the training-mode BatchNorm removes */
    scale_of[CAE_ATT_NORM_V_B] = CAE_ATT_NORM_V_W;
    scale_of[CAE_ATT_V_BIAS] = CAE_ATT_V_W;
    scale_of[CAE_ATT_PROJ_B] = CAE_ATT_PROJ_W;
    tu_fx_read(&f, "tests/fixtures/eval/attentive.safetensors");
    ck_assert_int_eq(cae_attentive_init(&a, tu_ctx(), B, T, D, H, K), 0);
    host = malloc(a.n_params * sizeof *host);
    grads = malloc(a.n_params * sizeof *grads);
    ck_assert(host && grads);
    cae_attentive_init_params(&a, 1, host); /* norm2_cross: ones and zeros */
    for (int i = 0; i < CAE_ATT_NPARAMS; i++) {
        const cae_att_param *p = &a.p[i];
        if (!p->trained)
            continue;
        snprintf(key, sizeof key, "param/%s", p->name);
        memcpy(host + p->off, fx(&f, key, p->numel), p->numel * 4);
    }
    ck_assert_int_eq(cae_write(tu_ctx(), a.params, host, a.n_params * 4), 0);
    ck_assert_int_eq(cae_attentive_train_step(&a, fx(&f, "x", B * T * D),
                                              (const int32_t *)cae_st_find(&f, "labels")->data,
                                              grads, &loss), 0);
    loss_f = (float)loss;
    assert_rel("loss", &loss_f, fx(&f, "loss", 1), 1, REL_TOL, 0);
    ck_assert_int_eq(cae_read(tu_ctx(), logits, a.logits, B * K * 4), 0);
    assert_rel("logits", logits, fx(&f, "logits", B * K), B * K, REL_TOL, 0);
    for (int i = 0; i < CAE_ATT_NPARAMS; i++) {
        const cae_att_param *p = &a.p[i];
        double scale = 0;
        snprintf(key, sizeof key, "grad/%s", p->name);
        if (!p->trained) {
            /* norm2_cross: not in the forward, so no gradient */
            for (size_t j = 0; j < p->numel; j++)
                ck_assert_msg(grads[p->off + j] == 0.0f, "%s has a gradient", p->name);
            continue;
        }
        if (scale_of[i] >= 0) {
            /* analytically zero gradients: judge them on the scale of their
             * weight's gradient */
            const cae_att_param *w = &a.p[scale_of[i]];
            char wkey[160];
            snprintf(wkey, sizeof wkey, "grad/%s", w->name);
            scale = l2(fx(&f, wkey, w->numel), w->numel);
        }
        assert_rel(key, grads + p->off, fx(&f, key, p->numel), p->numel, REL_TOL, scale);
    }
    ck_assert_int_eq(cae_read(tu_ctx(), rm, a.run_mean, D * 4), 0);
    ck_assert_int_eq(cae_read(tu_ctx(), rv, a.run_var, D * 4), 0);
    assert_rel("running_mean", rm, fx(&f, "running_mean", D), D, REL_TOL, 0);
    assert_rel("running_var", rv, fx(&f, "running_var", D), D, REL_TOL, 0);
    /* evaluation mode: the running statistics, fewer rows than planned */
    ck_assert_int_eq(cae_attentive_logits(&a, fx(&f, "x", B * T * D), B, logits), 0);
    assert_rel("logits_eval", logits, fx(&f, "logits_eval", B * K), B * K, REL_TOL, 0);
    ck_assert_int_eq(cae_attentive_logits(&a, fx(&f, "x", B * T * D), 2, logits), 0);
    assert_rel("logits_eval[:2]", logits, fx(&f, "logits_eval", B * K), 2 * K, REL_TOL, 0);
    free(host);
    free(grads);
    cae_attentive_free(&a);
    cae_st_free(&f);
}
END_TEST

START_TEST(test_attentive_table_and_init)
{
    cae_attentive a;
    float *host;
    double s = 0;
    const cae_att_param *q;
    ck_assert_int_eq(cae_attentive_init(&a, tu_ctx(), 4, 5, 8, 2, 3), 0);
    /* the official weight-decay groups */
    ck_assert_int_eq(cae_attentive_find(&a, "query_token")->decay, 1);
    ck_assert_int_eq(cae_attentive_find(&a, "attentive_blocks.0.cross_attn.k.weight")->decay, 1);
    ck_assert_int_eq(cae_attentive_find(&a, "head.weight")->decay, 1);
    ck_assert_int_eq(cae_attentive_find(&a, "head.bias")->decay, 0);
    ck_assert_int_eq(cae_attentive_find(&a, "attentive_blocks.0.cross_attn.q_bias")->decay, 0);
    ck_assert_int_eq(cae_attentive_find(&a, "attentive_blocks.0.norm1_v.weight")->decay, 0);
    ck_assert_int_eq(cae_attentive_find(&a, "attentive_blocks.0.norm2_cross.weight")->trained, 0);
    ck_assert_ptr_null(cae_attentive_find(&a, "attentive_blocks.0.cross_attn.k_bias"));
    host = malloc(a.n_params * sizeof *host);
    ck_assert_ptr_nonnull(host);
    cae_attentive_init_params(&a, 3, host);
    q = cae_attentive_find(&a, "query_token");
    for (size_t j = 0; j < q->numel; j++)
        ck_assert(host[q->off + j] == 0.0f);
    q = cae_attentive_find(&a, "attentive_blocks.0.norm1_q.weight");
    for (size_t j = 0; j < q->numel; j++)
        ck_assert(host[q->off + j] == 1.0f);
    q = cae_attentive_find(&a, "attentive_blocks.0.cross_attn.v.weight");
    for (size_t j = 0; j < q->numel; j++)
        s += (double)host[q->off + j] * host[q->off + j];
    s = sqrt(s / (double)q->numel); /* about 0.02 */
    ck_assert_msg(s > 0.01 && s < 0.03, "v.weight std %g", s);
    free(host);
    cae_attentive_free(&a);
    /* heads must divide the width */
    ck_assert_int_eq(cae_attentive_init(&a, tu_ctx(), 4, 5, 8, 3, 3), -1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("attentive");
    TCase *t = tu_tcase(s, "fixtures", 300);
    TU_ADD_TESTS(t, test_bn_fixture, test_lars_fixture, test_sgd_fixture, test_sgd_parse,
                 test_attentive_fixture, test_attentive_table_and_init);
    return s;
}

TU_MAIN(suite)

/* test_finetune.c: the fine-tuning model (src/eval/finetune_model.c; its
 * ops are tested in test_ops_finetune.c): one whole fine-tuning step of a
 * tiny model (depth 2, width 16, 2 heads, mean pooling, fc_norm, head, soft
 * targets with smoothing) against PyTorch
 * (tools/reference/finetune_reference.py -> tests/fixtures/finetune/):
 * loss, logits, every gradient, the layer-decay lr scales and decay flags,
 * and one AdamW step over the official parameter groups; loading an
 * encoder.* file.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/finetune_model.h"
#include "tests/common/fixture.h"
#include "eval/layer_decay.h"
#include "ops/finetune.h"
#include "train/optim.h"
#include "safetensors/safetensors.h"
#include "tests/common/testutil.h"
#include "tests/common/tinymodel.h"

static double rel_l2(const float *got, const double *want, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

/* ---- the PyTorch fixture ---- */

static cae_st_file fx;

static void fx_open(void)
{
    tu_fx_read(&fx, "tests/fixtures/finetune/step.safetensors");
}

/* a fixture tensor as doubles (F32 or F64) */
static double *fx_doubles(const cae_st_tensor *t)
{
    double *d = malloc(t->numel * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < t->numel; i++)
        d[i] = t->dtype == CAE_DT_F64 ? tu_fx_f64(t, i) : tu_fx_f32(t, i);
    return d;
}

static float *fx_floats(const cae_st_tensor *t)
{
    double *d = fx_doubles(t);
    float *f = malloc(t->numel * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < t->numel; i++)
        f[i] = (float)d[i];
    free(d);
    return f;
}

static void tiny_config(cae_config *c)
{
    tu_tiny_config(c, 12, 16, 2, 16, 4);
    c->mlp_ratio = 4.0;
    c->layer_scale_init_value = 0.1;
    c->drop_path = 0.0;
    c->pixel_target = 1;
    ck_assert_int_eq(cae_config_finish(c), 0);
}

/* the arena (params or grads) filled from fixture tensors <prefix><name> */
static void write_from_fixture(cae_ft_model *m, const cae_arena *a, const char *prefix)
{
    float **image = cae_arena_image_new(&m->table);
    ck_assert_ptr_nonnull(image);
    for (size_t i = 0; i < m->table.n; i++) {
        const cae_param *p = &m->table.p[i];
        const cae_st_tensor *t = tu_fx_find(&fx, "%s%s", prefix, p->name);
        float *f;
        ck_assert_msg(t->numel == p->numel, "%s: %zu elements, the model %zu", p->name, t->numel,
                      p->numel);
        f = fx_floats(t);
        memcpy(image[p->chunk] + p->off, f, p->numel * 4);
        free(f);
    }
    ck_assert_int_eq(cae_arena_write_image(m->ctx, &m->table, a, image), 0);
    cae_arena_image_free(&m->table, image);
}

/* every tensor of the arena against fixture tensors <prefix><name> */
static void compare_arena(cae_ft_model *m, const cae_arena *a, const char *prefix, double tol)
{
    float **image = cae_arena_image_new(&m->table);
    ck_assert_ptr_nonnull(image);
    ck_assert_int_eq(cae_arena_read_image(m->ctx, &m->table, a, image), 0);
    for (size_t i = 0; i < m->table.n; i++) {
        const cae_param *p = &m->table.p[i];
        double *want = fx_doubles(tu_fx_find(&fx, "%s%s", prefix, p->name));
        double e = rel_l2(image[p->chunk] + p->off, want, p->numel);
        ck_assert_msg(e <= tol, "%s%s: relative L2 error %.3g > %.1g", prefix, p->name, e, tol);
        free(want);
    }
    cae_arena_image_free(&m->table, image);
}

START_TEST(test_fixture_step)
{
    cae_config c;
    cae_ft_model m;
    const cae_st_tensor *images = NULL, *targets = NULL;
    float *img, *tgt, logits[3 * 5];
    double loss, *want_loss, *want_logits;
    size_t n_params = 0;

    fx_open();
    tiny_config(&c);
    ck_assert_int_eq(cae_ft_init(&m, tu_ctx(), &c, 5, 3), 0);
    /* the same tensors as the PyTorch model's named_parameters() */
    for (size_t i = 0; i < fx.n_tensors; i++)
        n_params += strncmp(fx.tensors[i].name, "param.", 6) == 0;
    ck_assert_uint_eq(n_params, m.table.n);
    write_from_fixture(&m, &m.params, "param.");
    images = tu_fx_find(&fx, "input.images");
    targets = tu_fx_find(&fx, "input.targets");
    img = fx_floats(images);
    tgt = fx_floats(targets);
    ck_assert_int_eq(cae_ft_train_step(&m, img, tgt, 0, 0, &loss), 0);
    want_loss = fx_doubles(tu_fx_find(&fx, "out.loss"));
    ck_assert_msg(fabs(loss - want_loss[0]) <= 1e-5 * fabs(want_loss[0]), "loss %.8f vs %.8f",
                  loss, want_loss[0]);
    ck_assert_int_eq(cae_read(m.ctx, logits, m.logits, sizeof logits), 0);
    want_logits = fx_doubles(tu_fx_find(&fx, "out.logits"));
    ck_assert_msg(rel_l2(logits, want_logits, 15) <= 1e-5, "logits: relative L2 %.3g",
                  rel_l2(logits, want_logits, 15));
    compare_arena(&m, &m.grads, "grad.", 1e-5);
    /* the evaluation forward gives the same logits (no drop path here) */
    {
        float again[3 * 5];
        double d[15];
        ck_assert_int_eq(cae_ft_logits(&m, img, 3, again), 0);
        for (size_t i = 0; i < 15; i++)
            d[i] = logits[i];
        tu_assert_close("evaluation logits", again, d, 15, 1e-6);
    }

    /* layer-wise lr decay and the weight-decay flags of the official groups */
    {
        double *scales = malloc(m.table.n * sizeof *scales);
        ck_assert_ptr_nonnull(scales);
        cae_layer_decay_scales(&m.table, c.depth, 0.75, scales);
        for (size_t i = 0; i < m.table.n; i++) {
            const cae_param *p = &m.table.p[i];
            double *s = fx_doubles(tu_fx_find(&fx, "lr_scale.%s", p->name));
            double *d = fx_doubles(tu_fx_find(&fx, "decay.%s", p->name));
            ck_assert_msg(fabs(scales[i] - s[0]) <= 1e-12, "%s: lr scale %g vs %g", p->name,
                          scales[i], s[0]);
            ck_assert_msg((p->decay != 0) == (d[0] != 0), "%s: decay %d vs %g", p->name, p->decay,
                          d[0]);
            free(s);
            free(d);
        }

        /* one AdamW step over those groups, from the fixture's gradients */
        {
            cae_adamw *o;
            cae_adamw_hparams h = {1e-3, 0.05, 0.9, 0.999, 1e-8, 0.0};
            tu_dbuf norm = tu_filled(1, 0);
            write_from_fixture(&m, &m.params, "param.");
            write_from_fixture(&m, &m.grads, "grad.");
            ck_assert_int_eq(cae_adamw_new(&o, m.ctx, &m.table, &m.params, &m.grads), 0);
            ck_assert_int_eq(cae_adamw_step_scaled(o, &h, scales, norm.buf), 0);
            compare_arena(&m, &m.params, "adamw.", 1e-6);
            cae_adamw_free(o);
            tu_free(&norm);
        }
        free(scales);
    }
    free(img);
    free(tgt);
    free(want_loss);
    free(want_logits);
    cae_ft_free(&m);
    cae_st_free(&fx);
}
END_TEST

/* --finetune FILE: encoder.* tensors with the prefix stripped; the final
 * norm and other tensors unused; fc_norm and head keep their init */
START_TEST(test_load_encoder_file)
{
    cae_config c;
    cae_ft_model m;
    cae_st_writer *w;
    char path[] = "/tmp/cae-ft-load-XXXXXX";
    int fd;
    float **image;
    int64_t one[1] = {16};
    float ones[16];
    FILE *report;
    char *text = NULL;
    size_t text_size = 0;

    for (int i = 0; i < 16; i++)
        ones[i] = 1.0f;
    fx_open();
    tiny_config(&c);
    ck_assert_int_eq(cae_ft_init(&m, tu_ctx(), &c, 5, 3), 0);
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    w = cae_st_writer_new();
    ck_assert_ptr_nonnull(w);
    for (size_t i = 0; i < m.table.n; i++) {
        const cae_param *p = &m.table.p[i];
        char key[256];
        if (strncmp(p->name, "fc_norm.", 8) == 0 || strncmp(p->name, "head.", 5) == 0)
            continue;
        snprintf(key, sizeof key, "encoder.%s", p->name);
        ck_assert_int_eq(cae_st_writer_add(w, key, CAE_DT_F32, p->ndim, p->shape,
                                           tu_fx_find(&fx, "param.%s", p->name)->data), 0);
    }
    ck_assert_int_eq(cae_st_writer_add(w, "encoder.norm.weight", CAE_DT_F32, 1, one, ones), 0);
    ck_assert_int_eq(cae_st_writer_write(w, path), 0);
    cae_st_writer_free(w);

    report = open_memstream(&text, &text_size);
    ck_assert_ptr_nonnull(report);
    ck_assert_int_eq(cae_ft_load(&m, path, 5, 0.001, report), 0);
    fclose(report);
    ck_assert_msg(strstr(text, "not initialized from pretrained model: ['fc_norm.weight', "
                               "'fc_norm.bias', 'head.weight', 'head.bias']") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "not used in VisionTransformer: ['encoder.norm.weight']") != NULL,
                  "%s", text);
    free(text);
    image = cae_arena_image_new(&m.table);
    ck_assert_ptr_nonnull(image);
    ck_assert_int_eq(cae_arena_read_image(m.ctx, &m.table, &m.params, image), 0);
    for (size_t i = 0; i < m.table.n; i++) {
        const cae_param *p = &m.table.p[i];
        const float *got = image[p->chunk] + p->off;
        if (strcmp(p->name, "head.weight") == 0) {
            /* trunc_normal(0.02) * init_scale */
            double mx = 0;
            for (size_t k = 0; k < p->numel; k++)
                mx = fmax(mx, fabs(got[k]));
            ck_assert_msg(mx > 0 && mx <= 0.02 * 0.001 + 1e-9, "head init max %g", mx);
        } else if (strcmp(p->name, "fc_norm.weight") == 0) {
            ck_assert(got[0] == 1.0f && got[p->numel - 1] == 1.0f);
        } else if (strcmp(p->name, "head.bias") == 0 || strcmp(p->name, "fc_norm.bias") == 0) {
            ck_assert(got[0] == 0.0f);
        } else {
            const void *want = tu_fx_find(&fx, "param.%s", p->name)->data;
            ck_assert_msg(memcmp(got, want, p->numel * 4) == 0, "%s not loaded", p->name);
        }
    }
    cae_arena_image_free(&m.table, image);

    /* a tensor of another shape is refused (the line names it) */
    w = cae_st_writer_new();
    {
        int64_t bad[1] = {8};
        ck_assert_int_eq(cae_st_writer_add(w, "encoder.blocks.0.attn.q_bias", CAE_DT_F32, 1, bad,
                                           ones), 0);
    }
    ck_assert_int_eq(cae_st_writer_write(w, path), 0);
    cae_st_writer_free(w);
    ck_assert_int_ne(cae_ft_load(&m, path, 5, 0.001, NULL), 0);
    unlink(path);
    cae_ft_free(&m);
    cae_st_free(&fx);
}
END_TEST

static Suite *finetune_suite(void)
{
    Suite *s = suite_create("finetune");
    TCase *tc = tu_tcase(s, "model", 600);
    TU_ADD_TESTS(tc, test_fixture_step, test_load_encoder_file);
    return s;
}

TU_MAIN(finetune_suite)

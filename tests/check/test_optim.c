/* test_optim.c: AdamW with global-norm clipping against torch, the arena
 * layout's decayed prefix, and the cosine schedules against numpy.
 *
 * The fixture (tests/fixtures/adamw, written by
 * tools/reference/adamw_reference.py) holds a small fake model with decayed
 * and undecayed tensors, three steps of gradients and the state torch's
 * AdamW (two parameter groups, after clip_grad_norm_) reaches after each
 * step. The table is built by hand from its tensor names and laid out with
 * several chunk limits, down to a few KiB so the arena spans several
 * buffers. Parameters, both moments and the gradient arena (which the step
 * leaves clipped, as torch does in place) must match to relative L2 1e-5
 * per tensor; the padding between tensors must stay zero in the moments.
 *
 * CAE_BENCH_ADAMW_PARAMS=N sizes the bandwidth case (default 2^22; the
 * CAE-base arena is about 149000000); it prints GB/s and ms per step. Under
 * oclgrind: CK_RUN_CASE=adamw CAE_BENCH_ADAMW_PARAMS=5000 oclgrind
 * --data-races --check-api tests/check/test_optim.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/common/fixture.h"
#include "train/optim.h"
#include "model/params.h"
#include "safetensors/safetensors.h"
#include "train/schedule.h"
#include "tests/common/testutil.h"

#define TOL 1e-5
#define STEPS 3

/* "base final epochs niter_per_ep warmup_epochs warmup_steps start" */
static cae_schedule parse_schedule(const char *text)
{
    cae_schedule s;
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(sscanf(text, "%lf %lf %zu %zu %zu %ld %lf", &s.base, &s.final, &s.epochs,
                            &s.niter_per_ep, &s.warmup_epochs, &s.warmup_steps, &s.start_warmup),
                     7);
    return s;
}

/* "clip C betas B1 B2 eps E" */
static cae_adamw_hparams parse_run(const cae_st_file *f, const char *run)
{
    cae_adamw_hparams h = {0};
    const char *text = cae_st_meta(f, run);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(sscanf(text, "clip %lf betas %lf %lf eps %lf", &h.clip_grad, &h.beta1, &h.beta2,
                            &h.eps),
                     4);
    return h;
}

/* The fake model's table, in the fixture's model order, with the official
 * decay rule, laid out for buffers of at most max_chunk_bytes. */
static void table_from_fixture(cae_param_table *t, const cae_st_file *f, size_t max_chunk_bytes)
{
    const char *names = cae_st_meta(f, "params");
    char list[4096], *save = NULL;
    ck_assert_ptr_nonnull(names);
    ck_assert_uint_lt(strlen(names), sizeof list);
    strcpy(list, names);
    memset(t, 0, sizeof *t);
    t->cap = 64;
    t->p = calloc(t->cap, sizeof *t->p);
    ck_assert_ptr_nonnull(t->p);
    for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        const cae_st_tensor *st;
        cae_param *p;
        size_t len = strlen(name);
        ck_assert_uint_lt(t->n, t->cap);
        st = tu_fx_find(f, "param/%s", name);
        p = &t->p[t->n++];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->ndim = st->ndim;
        for (int d = 0; d < st->ndim; d++)
            p->shape[d] = st->shape[d];
        p->numel = st->numel;
        p->decay = p->ndim >= 2 && !(len >= 5 && strcmp(name + len - 5, ".bias") == 0);
    }
    ck_assert_int_eq(cae_params_layout(t, max_chunk_bytes), 0);
}

/* ---- layout invariants ---- */

static void check_layout(const cae_param_table *t, size_t max_chunk_bytes)
{
    size_t limit = max_chunk_bytes / 4, total = 0;
    int prev = 0;
    size_t *end = calloc((size_t)t->n_chunks, sizeof *end);
    size_t *dec_end = calloc((size_t)t->n_chunks, sizeof *dec_end);
    ck_assert_ptr_nonnull(end);
    ck_assert_ptr_nonnull(dec_end);
    ck_assert_int_ge(t->n_chunks, 1);
    for (size_t i = 0; i < t->n; i++) {
        const cae_param *p = &t->p[i];
        int c = p->chunk;
        size_t de = t->chunk_decay_elems[c];
        /* buffers follow table order; alignment; inside the buffer */
        ck_assert_int_ge(c, prev);
        ck_assert_int_lt(c, t->n_chunks);
        prev = c;
        ck_assert_msg(p->off % 16 == 0, "%s at %zu: not 16-aligned", p->name, p->off);
        ck_assert_uint_le(p->off + p->numel, t->chunk_elems[c]);
        /* the decayed prefix holds exactly the decayed tensors */
        if (p->decay)
            ck_assert_msg(p->off + p->numel <= de, "%s ends past the decayed prefix", p->name);
        else
            ck_assert_msg(p->off >= de, "%s starts inside the decayed prefix", p->name);
        if (p->off + p->numel > end[c])
            end[c] = p->off + p->numel;
        if (p->decay && p->off + p->numel > dec_end[c])
            dec_end[c] = p->off + p->numel;
        total += p->numel;
        /* no overlap; each group keeps table order */
        for (size_t j = 0; j < i; j++) {
            const cae_param *q = &t->p[j];
            if (q->chunk != c)
                continue;
            ck_assert_msg(q->off + q->numel <= p->off || p->off + p->numel <= q->off,
                          "%s overlaps %s", p->name, q->name);
            if (q->decay == p->decay)
                ck_assert_uint_lt(q->off, p->off);
        }
    }
    for (int c = 0; c < t->n_chunks; c++) {
        ck_assert_uint_le(t->chunk_elems[c], limit);
        ck_assert_uint_eq(t->chunk_elems[c], end[c]); /* no trailing waste */
        ck_assert_uint_eq(t->chunk_decay_elems[c], dec_end[c]);
    }
    ck_assert_uint_eq(total, t->total);
    free(end);
    free(dec_end);
}

START_TEST(test_layout_models)
{
    static const char *models[] = {"cae_tiny_patch16_224_8k_vocab", "cae_base_patch16_224_8k_vocab",
                                   "cae_large_patch16_224_8k_vocab"};
    static const size_t limits[] = {(size_t)1 << 40, (size_t)64 << 20, ((size_t)37 << 20) + 4};
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
            cae_config c;
            cae_param_table t;
            size_t n_decay = 0;
            cae_config_defaults(&c);
            ck_assert_int_eq(cae_config_preset(&c, models[m]), 0);
            c.num_mask_patches = 75;
            ck_assert_int_eq(cae_config_finish(&c), 0);
            ck_assert_int_eq(cae_params_build(&t, &c, limits[l]), 0);
            check_layout(&t, limits[l]);
            for (size_t i = 0; i < t.n; i++)
                n_decay += t.p[i].decay;
            ck_assert_uint_gt(n_decay, 0);
            ck_assert_uint_lt(n_decay, t.n);
            if (l > 0) /* large enough models split at 64 MiB */
                ck_assert_int_gt(t.n_chunks, m == 0 ? 0 : 1);
            /* table order: the model's, untouched */
            ck_assert_str_eq(t.p[0].name, "encoder.cls_token");
            ck_assert_str_eq(t.p[t.n - 1].name, "decoder.head.bias");
            cae_params_free(&t);
        }
    }
}
END_TEST

START_TEST(test_layout_fixture)
{
    cae_st_file f;
    cae_param_table t;
    static const size_t limits[] = {(size_t)1 << 30, 4096, 4100, 3000 * 4};
    tu_fx_read(&f, "tests/fixtures/adamw/adamw.safetensors");
    for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
        table_from_fixture(&t, &f, limits[l]);
        check_layout(&t, limits[l]);
        if (limits[l] == 4096)
            ck_assert_int_ge(t.n_chunks, 3);
        if (limits[l] == (size_t)1 << 30)
            ck_assert_int_eq(t.n_chunks, 1);
        /* the first tensor (a 3-D token, decayed) opens the first buffer */
        ck_assert_str_eq(t.p[0].name, "cls_token");
        ck_assert_uint_eq(t.p[0].off, 0);
        cae_params_free(&t);
    }
    /* a tensor bigger than a buffer is refused */
    memset(&t, 0, sizeof t);
    table_from_fixture(&t, &f, 4096);
    ck_assert_int_eq(cae_params_layout(&t, 1024), -1);
    cae_params_free(&t);
    cae_st_free(&f);
}
END_TEST

/* ---- device helpers ---- */

typedef struct {
    cae_param_table t;
    cae_arena params, grads;
    cl_mem norm;
} optim_env;

static void write_tensors(optim_env *e, const cae_arena *a, const cae_st_file *f, const char *prefix)
{
    float **image = cae_arena_image_new(&e->t);
    ck_assert_ptr_nonnull(image);
    for (size_t i = 0; i < e->t.n; i++) {
        const cae_param *p = &e->t.p[i];
        memcpy(image[p->chunk] + p->off, tu_fx_f32s(f, p->numel, "%s/%s", prefix, p->name),
               p->numel * 4);
    }
    ck_assert_int_eq(cae_arena_write_image(tu_ctx(), &e->t, a, image), 0);
    cae_arena_image_free(&e->t, image);
}

static float **read_arena(optim_env *e, const cae_arena *a)
{
    float **image = cae_arena_image_new(&e->t);
    ck_assert_ptr_nonnull(image);
    for (int c = 0; c < e->t.n_chunks; c++)
        ck_assert_int_eq(cae_read(tu_ctx(), image[c], (cae_buf){a->mem[c], 0},
                                  e->t.chunk_elems[c] * 4), 0);
    return image;
}

static double rel_l2(const float *got, const float *want, size_t n)
{
    double d = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        double x = (double)got[i] - want[i];
        d += x * x;
        w += (double)want[i] * want[i];
    }
    return sqrt(d) / (w > 0 ? sqrt(w) : 1e-30);
}

/* Every tensor of arena a against prefix/<name>; tol 0 asks for bit
 * equality. With zero_gaps, the elements between tensors must be 0. */
static void check_arena(optim_env *e, const cae_arena *a, const cae_st_file *f, const char *prefix,
                        double tol, int zero_gaps)
{
    float **image = read_arena(e, a);
    for (size_t i = 0; i < e->t.n; i++) {
        const cae_param *p = &e->t.p[i];
        const float *want = tu_fx_f32s(f, p->numel, "%s/%s", prefix, p->name);
        float *got = image[p->chunk] + p->off;
        if (tol == 0) {
            ck_assert_msg(memcmp(got, want, p->numel * 4) == 0, "%s/%s changed", prefix, p->name);
        } else {
            double err = rel_l2(got, want, p->numel);
            ck_assert_msg(err <= tol, "%s/%s: relative L2 %.3g > %.1g", prefix, p->name, err, tol);
        }
        memset(got, 0, p->numel * 4); /* what remains are the gaps */
    }
    for (int c = 0; zero_gaps && c < e->t.n_chunks; c++)
        for (size_t j = 0; j < e->t.chunk_elems[c]; j++)
            ck_assert_msg(image[c][j] == 0.0f, "%s: gap element %zu of buffer %d is %g", prefix, j,
                          c, image[c][j]);
    cae_arena_image_free(&e->t, image);
}

static void env_init(optim_env *e, const cae_st_file *f, size_t max_chunk_bytes)
{
    cae_ctx *ctx = tu_ctx();
    table_from_fixture(&e->t, f, max_chunk_bytes);
    ck_assert_int_eq(cae_arena_alloc(ctx, &e->t, &e->params), 0);
    ck_assert_int_eq(cae_arena_alloc(ctx, &e->t, &e->grads), 0);
    ck_assert_int_eq(cae_alloc(ctx, 4, &e->norm), 0);
    write_tensors(e, &e->params, f, "param");
}

static void env_free(optim_env *e)
{
    cae_arena_free(&e->params);
    cae_arena_free(&e->grads);
    cae_release(&e->norm);
    cae_params_free(&e->t);
}

/* step k's gradients into the grad arena (its gaps zero, as after
 * cae_arena_zero) and the scheduled lr and weight decay into h */
static void prepare_step(optim_env *e, const cae_st_file *f, int k, cae_adamw_hparams *h)
{
    char prefix[32];
    cae_schedule lr = parse_schedule(cae_st_meta(f, "lr_schedule"));
    cae_schedule wd = parse_schedule(cae_st_meta(f, "wd_schedule"));
    const cae_st_tensor *lrs = tu_fx_get_n(f, CAE_DT_F64, STEPS, "lr");
    const cae_st_tensor *wds = tu_fx_get_n(f, CAE_DT_F64, STEPS, "weight_decay");
    snprintf(prefix, sizeof prefix, "grad/%d", k);
    ck_assert_int_eq(cae_arena_zero(tu_ctx(), &e->t, &e->grads), 0);
    write_tensors(e, &e->grads, f, prefix);
    h->lr = cae_schedule_at(&lr, (size_t)k);
    h->weight_decay = cae_schedule_at(&wd, (size_t)k);
    /* the schedule is numpy's to the bit */
    ck_assert_msg(h->lr == tu_fx_f64(lrs, k), "lr at step %d: %.17g, numpy %.17g", k, h->lr,
                  tu_fx_f64(lrs, k));
    ck_assert_msg(h->weight_decay == tu_fx_f64(wds, k), "wd at step %d: %.17g, numpy %.17g", k,
                  h->weight_decay, tu_fx_f64(wds, k));
}

static void check_norm(optim_env *e, const cae_st_file *f, const char *run, int k)
{
    float got;
    char name[64];
    snprintf(name, sizeof name, "%s/grad_norm", run);
    ck_assert_int_eq(cae_read(tu_ctx(), &got, (cae_buf){e->norm, 0}, 4), 0);
    ck_assert_msg(fabs(got - tu_fx_f32s(f, STEPS, "%s", name)[k]) <=
                      TOL * tu_fx_f32s(f, STEPS, "%s", name)[k],
                  "%s step %d: %g vs %g", name, k, got, tu_fx_f32s(f, STEPS, "%s", name)[k]);
}

static void check_state(optim_env *e, cae_adamw *o, const cae_st_file *f, const char *run, int k)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s/%d/param", run, k);
    check_arena(e, &e->params, f, prefix, TOL, 0);
    snprintf(prefix, sizeof prefix, "%s/%d/exp_avg", run, k);
    check_arena(e, cae_adamw_exp_avg(o), f, prefix, TOL, 1);
    snprintf(prefix, sizeof prefix, "%s/%d/exp_avg_sq", run, k);
    check_arena(e, cae_adamw_exp_avg_sq(o), f, prefix, TOL, 1);
}

/* ---- AdamW against torch ---- */

static const size_t chunk_limits[] = {(size_t)1 << 30, 4096, 4100};

/* The AdamW fixture's run (clip or noclip) on an environment whose arenas
 * split at max_chunk_bytes, and a fresh optimizer over it; adamw_close
 * frees all three. */
static cae_adamw *adamw_open(cae_st_file *f, optim_env *e, cae_adamw_hparams *h, const char *run,
                             size_t max_chunk_bytes)
{
    cae_adamw *o;
    tu_fx_read(f, "tests/fixtures/adamw/adamw.safetensors");
    *h = parse_run(f, run);
    env_init(e, f, max_chunk_bytes);
    ck_assert_int_eq(cae_adamw_new(&o, tu_ctx(), &e->t, &e->params, &e->grads), 0);
    return o;
}

static void adamw_close(cae_adamw *o, optim_env *e, cae_st_file *f)
{
    cae_adamw_free(o);
    env_free(e);
    cae_st_free(f);
}

START_TEST(test_adamw_clip)
{
    cae_st_file f;
    optim_env e;
    cae_adamw_hparams h;
    cae_adamw *o = adamw_open(&f, &e, &h, "clip", chunk_limits[_i]);
    ck_assert(h.clip_grad > 0);
    ck_assert_uint_eq(cae_adamw_steps(o), 0);
    for (int k = 0; k < STEPS; k++) {
        char prefix[64];
        prepare_step(&e, &f, k, &h);
        ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){e.norm, 0}), 0);
        check_norm(&e, &f, "clip", k);
        check_state(&e, o, &f, "clip", k);
        /* the gradient arena is left as torch leaves .grad: clipped in
         * place where the clip was active (steps 0 and 2), else untouched */
        snprintf(prefix, sizeof prefix, "clip/%d/grad", k);
        check_arena(&e, &e.grads, &f, prefix, TOL, 1);
        if (k == 1) {
            snprintf(prefix, sizeof prefix, "grad/%d", k);
            check_arena(&e, &e.grads, &f, prefix, 0, 1);
        }
    }
    ck_assert_uint_eq(cae_adamw_steps(o), STEPS);
    adamw_close(o, &e, &f);
}
END_TEST

START_TEST(test_adamw_noclip)
{
    cae_st_file f;
    optim_env e;
    cae_adamw_hparams h;
    cae_adamw *o = adamw_open(&f, &e, &h, "noclip", chunk_limits[_i]);
    ck_assert(h.clip_grad <= 0);
    for (int k = 0; k < STEPS; k++) {
        char prefix[64];
        prepare_step(&e, &f, k, &h);
        ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){e.norm, 0}), 0);
        /* the norm is still measured; the gradients stay bit for bit */
        check_norm(&e, &f, "noclip", k);
        snprintf(prefix, sizeof prefix, "grad/%d", k);
        check_arena(&e, &e.grads, &f, prefix, 0, 1);
    }
    check_state(&e, o, &f, "noclip", STEPS - 1);
    adamw_close(o, &e, &f);
}
END_TEST

/* A resumed optimizer (moments and step count restored, as from a
 * checkpoint) continues exactly where the first left off. */
START_TEST(test_adamw_resume)
{
    cae_st_file f;
    optim_env e;
    cae_adamw_hparams h;
    cae_adamw *o = adamw_open(&f, &e, &h, "clip", 4096);
    write_tensors(&e, &e.params, &f, "clip/1/param");
    write_tensors(&e, cae_adamw_exp_avg(o), &f, "clip/1/exp_avg");
    write_tensors(&e, cae_adamw_exp_avg_sq(o), &f, "clip/1/exp_avg_sq");
    cae_adamw_set_steps(o, 2);
    ck_assert_uint_eq(cae_adamw_steps(o), 2);
    prepare_step(&e, &f, 2, &h);
    ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){e.norm, 0}), 0);
    check_norm(&e, &f, "clip", 2);
    check_state(&e, o, &f, "clip", 2);
    adamw_close(o, &e, &f);
}
END_TEST

START_TEST(test_adamw_refuses)
{
    cae_st_file f;
    optim_env e;
    cae_adamw *o;
    cae_arena short_arena = {NULL, 0};
    cae_adamw_hparams good = {1e-3, 0.05, 0.9, 0.999, 1e-8, 3.0}, h;
    tu_fx_read(&f, "tests/fixtures/adamw/adamw.safetensors");
    env_init(&e, &f, 4096);
    /* arenas that do not match the table */
    ck_assert_int_eq(cae_adamw_new(&o, tu_ctx(), &e.t, &short_arena, &e.grads), -1);
    ck_assert_ptr_null(o);
    ck_assert_int_eq(cae_adamw_new(&o, tu_ctx(), &e.t, &e.params, &e.grads), 0);
    h = good;
    h.beta1 = 1.0;
    ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){e.norm, 0}), -1);
    h = good;
    h.eps = 0;
    ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){e.norm, 0}), -1);
    h = good;
    h.lr = NAN;
    ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){e.norm, 0}), -1);
    ck_assert_int_eq(cae_adamw_step(o, &good, cae_buf_null()), -1);
    /* a refused step changes nothing, the count included */
    ck_assert_uint_eq(cae_adamw_steps(o), 0);
    check_arena(&e, &e.params, &f, "param", 0, 0);
    cae_adamw_free(o);
    cae_adamw_free(NULL);
    env_free(&e);
    cae_st_free(&f);
}
END_TEST

/* ---- bandwidth ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Two tensor kinds alternating (a decayed matrix, an undecayed vector) up
 * to N elements; constant gradients g make the result known: after one
 * step every element moves by lr * g / (|g| + eps) after its decay. */
START_TEST(test_adamw_bandwidth)
{
    cae_ctx *ctx = tu_ctx();
    const char *env = getenv("CAE_BENCH_ADAMW_PARAMS");
    size_t want = env && *env ? strtoull(env, NULL, 10) : (size_t)1 << 22, n_steps = 4;
    /* CAE-base's MLP shapes, or small odd ones for small runs (oclgrind) */
    const size_t mat = want >= (size_t)1 << 22 ? 768 * 3072 : 37 * 101;
    const size_t vec = want >= (size_t)1 << 22 ? 3072 : 37;
    cae_param_table t = {0};
    cae_arena params, grads;
    cae_adamw *o;
    cl_mem norm;
    const float g = 1e-3f, p0 = 0.5f;
    cae_adamw_hparams h = {1e-3, 0.05, 0.9, 0.999, 1e-8, 0};
    double t0, dt, bytes, expect;
    float got_norm, d_first, nd_first;

    t.cap = want / (mat + vec) * 2 + 4;
    t.p = calloc(t.cap, sizeof *t.p);
    ck_assert_ptr_nonnull(t.p);
    for (size_t used = 0; used < want || t.n < 2; t.n++) {
        cae_param *p = &t.p[t.n];
        ck_assert_uint_lt(t.n, t.cap);
        snprintf(p->name, sizeof p->name, "t%zu%s", t.n, t.n % 2 ? ".bias" : ".weight");
        p->ndim = t.n % 2 ? 1 : 2;
        p->numel = t.n % 2 ? vec : mat;
        p->shape[0] = (int64_t)p->numel;
        p->shape[1] = 1;
        p->decay = t.n % 2 == 0;
        used += p->numel;
    }
    ck_assert_int_eq(cae_params_layout(&t, cae_params_chunk_limit(ctx)), 0);
    ck_assert_int_eq(cae_arena_alloc(ctx, &t, &params), 0);
    ck_assert_int_eq(cae_arena_alloc(ctx, &t, &grads), 0);
    ck_assert_int_eq(cae_alloc(ctx, 4, &norm), 0);
    for (int c = 0; c < t.n_chunks; c++) {
        ck_assert_int_eq(cae_fill_float(ctx, (cae_buf){params.mem[c], 0}, p0, t.chunk_elems[c]), 0);
        ck_assert_int_eq(cae_fill_float(ctx, (cae_buf){grads.mem[c], 0}, g, t.chunk_elems[c]), 0);
    }
    ck_assert_int_eq(cae_adamw_new(&o, ctx, &t, &params, &grads), 0);
    /* clipping on but inactive: the grads stay g for every step */
    h.clip_grad = 1e30;
    ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){norm, 0}), 0);
    ck_assert_int_eq(cae_finish(ctx), 0);

    /* the padding holds g too (filled whole), so the norm covers it */
    {
        size_t all = 0;
        for (int c = 0; c < t.n_chunks; c++)
            all += t.chunk_elems[c];
        expect = g * sqrt((double)all);
    }
    ck_assert_int_eq(cae_read(ctx, &got_norm, (cae_buf){norm, 0}, 4), 0);
    ck_assert_msg(fabs(got_norm - expect) <= 1e-4 * expect, "norm %g, want %g", got_norm, expect);
    ck_assert_int_eq(cae_read(ctx, &d_first, (cae_buf){params.mem[0], t.p[0].off}, 4), 0);
    ck_assert_int_eq(cae_read(ctx, &nd_first, (cae_buf){params.mem[0], t.p[1].off}, 4), 0);
    ck_assert_float_eq_tol(d_first, p0 * (1 - 1e-3 * 0.05) - 1e-3 * g / (g + 1e-8), 1e-6);
    ck_assert_float_eq_tol(nd_first, p0 - 1e-3 * g / (g + 1e-8), 1e-6);

    /* clipping inactive (the gradients only read), then active (written
     * back too): clip just under the norm keeps it active at every step */
    for (int active = 0; active < 2; active++) {
        if (active)
            h.clip_grad = 0.5 * expect;
        t0 = now_s();
        for (size_t s = 0; s < n_steps; s++)
            ck_assert_int_eq(cae_adamw_step(o, &h, (cae_buf){norm, 0}), 0);
        ck_assert_int_eq(cae_finish(ctx), 0);
        dt = (now_s() - t0) / (double)n_steps;
        /* the norm pass reads g; the update reads p g m v, writes p m v (g) */
        bytes = (double)t.total * 4 * (1 + 7 + active);
        printf("adamw: %zu params in %d buffers on %s, clipping %s: %.1f ms/step, %.2f GB/s\n",
               t.total, t.n_chunks, ctx->device_name, active ? "active" : "inactive", dt * 1e3,
               bytes / dt / 1e9);
    }
    ck_assert_int_eq(cae_read(ctx, &got_norm, (cae_buf){norm, 0}, 4), 0);
    ck_assert_msg(got_norm < 0.51 * expect, "clipping did not act: norm %g of %g", got_norm, expect);
    ck_assert_uint_eq(cae_adamw_steps(o), 2 * n_steps + 1);
    cae_adamw_free(o);
    cae_release(&norm);
    cae_arena_free(&params);
    cae_arena_free(&grads);
    cae_params_free(&t);
}
END_TEST

/* ---- schedules ---- */

START_TEST(test_schedule_fixture)
{
    cae_st_file f;
    size_t cases = 0;
    tu_fx_read(&f, "tests/fixtures/adamw/schedules.safetensors");
    for (size_t i = 0; i < f.n_tensors; i++) {
        const cae_st_tensor *st = &f.tensors[i];
        cae_schedule s = parse_schedule(cae_st_meta(&f, st->name));
        const cae_st_tensor *want = tu_fx_get_n(&f, CAE_DT_F64, st->numel, "%s", st->name);
        ck_assert_uint_eq(st->numel, s.epochs * s.niter_per_ep);
        for (size_t it = 0; it < st->numel; it++) {
            double got = cae_schedule_at(&s, it);
            ck_assert_msg(got == tu_fx_f64(want, it), "%s[%zu]: %.17g, numpy %.17g", st->name, it,
                          got, tu_fx_f64(want, it));
        }
        /* past the end: the last value */
        ck_assert(cae_schedule_at(&s, st->numel) == tu_fx_f64(want, st->numel - 1));
        ck_assert(cae_schedule_at(&s, st->numel + 1000) == tu_fx_f64(want, st->numel - 1));
        cases++;
    }
    ck_assert_uint_ge(cases, 5);
    cae_st_free(&f);
}
END_TEST

START_TEST(test_schedule_edges)
{
    /* warmup_steps without warmup_epochs (the official code would fail its
     * length assertion): still a linear warmup, then the cosine */
    cae_schedule s = {1.0, 0.0, 2, 5, 0, 4, 0.0};
    ck_assert(cae_schedule_at(&s, 0) == 0.0);
    ck_assert(cae_schedule_at(&s, 1) == 1.0 / 3);
    ck_assert(cae_schedule_at(&s, 3) == 1.0);
    ck_assert(cae_schedule_at(&s, 4) == 1.0);       /* cosine at i = 0 */
    ck_assert_double_eq_tol(cae_schedule_at(&s, 7), 0.5, 1e-15); /* i = 3 of 6 */
    ck_assert(cae_schedule_at(&s, 9) > 0.0);        /* never reaches final */
    /* no warmup at all, and warmup longer than the run */
    s = (cae_schedule){2.0, 1.0, 1, 4, 0, -1, 0.0};
    ck_assert(cae_schedule_at(&s, 0) == 2.0);
    s = (cae_schedule){2.0, 1.0, 1, 4, 0, 10, 0.0};
    ck_assert(cae_schedule_at(&s, 3) == 2.0 * 3 / 9);
    ck_assert(cae_schedule_at(&s, 100) == 2.0 * 3 / 9);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    size_t n_limits = sizeof chunk_limits / sizeof *chunk_limits;
    TCase *tc = tu_tcase(s, "layout", 300);
    TU_ADD_TESTS(tc, test_layout_models, test_layout_fixture);
    tc = tu_tcase(s, "schedule", 300);
    TU_ADD_TESTS(tc, test_schedule_fixture, test_schedule_edges);
    tc = tu_tcase(s, "adamw", 300);
    tcase_add_loop_test(tc, test_adamw_clip, 0, (int)n_limits);
    tcase_add_loop_test(tc, test_adamw_noclip, 0, (int)n_limits);
    TU_ADD_TESTS(tc, test_adamw_resume, test_adamw_refuses, test_adamw_bandwidth);
    return s;
}

TU_MAIN(optim_suite)

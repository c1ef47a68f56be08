/* cae-cl-bench: times the training step (model step + AdamW) of any
 * configuration and reports images/s, ms per step, the analytic FLOP
 * count, model FLOP/s, MFU against a GEMM peak measured here, peak device
 * memory and a per-op table from OpenCL profiling events.
 *
 * Same flags as cae-cl-train. --synthetic: random images, block masks and
 * random token labels (no data, no tokenizer); otherwise the loader's
 * batches (data-wait reported) and, with --discrete_vae_weight_path, the
 * DALL-E tokenizer, whose cost is timed and reported on its own line.
 * Order: warm-up steps, timed steps (no profiling events), then two
 * profiled steps for the op table (events add per-launch overhead).
 */
#include "train/args.h"
#include "data/loader_args.h"
#include "runtime/errors.h"
#include "model/flops.h"
#include "runtime/gemm.h"
#include "model/model.h"
#include "train/optim.h"
#include "runtime/profile.h"
#include "tokenizer/dalle.h"
#include "train/train_log.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#define PROFILED_STEPS 2
#define SYNTH_BATCHES 4 /* distinct synthetic batches, used in turn */

typedef struct {
    cae_args a;
    cae_ctx ctx;
    cae_model model;
    cae_adamw *opt;
    cae_dalle *dalle;
    cae_dataset *ds;
    cae_loader *loader;
    cae_buf tok_view, grad_norm;
    uint64_t epoch, step, steps_per_epoch, in_epoch;
    /* synthetic batches */
    float *samples;
    unsigned char *masks;
    int32_t *labels;
    /* measurements */
    double peak_gflops, data_wait_ms, tok_ms;
    size_t tok_calls;
    int have_ctx, have_model;
} bench;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int make_synthetic(bench *b)
{
    const cae_config *c = &b->a.model;
    size_t B = (size_t)b->a.batch_size, S = (size_t)c->input_size, N = (size_t)c->num_patches;
    size_t M = (size_t)c->num_mask_patches, n_img = SYNTH_BATCHES * B * 3 * S * S;
    uint64_t s = (uint64_t)b->a.seed * 7919 + 1;
    cae_mask_cfg mc;
    CAE_TRY(cae_mask_cfg_from_args(&b->a, &mc));
    b->samples = malloc(n_img * sizeof *b->samples);
    b->masks = malloc(SYNTH_BATCHES * B * N);
    b->labels = malloc(SYNTH_BATCHES * B * M * sizeof *b->labels);
    if (!b->samples || !b->masks || !b->labels) {
        cae_errorf("out of host memory for synthetic batches");
        return -1;
    }
    for (size_t i = 0; i < n_img; i++) /* roughly a normalized image's range */
        b->samples[i] = (float)((double)(rng_next(&s) >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    for (size_t i = 0; i < SYNTH_BATCHES * B; i++)
        cae_mask_generate(&mc, rng_next(&s), b->masks + i * N);
    for (size_t i = 0; i < SYNTH_BATCHES * B * M; i++)
        b->labels[i] = (int32_t)(rng_next(&s) % (uint64_t)c->decoder_num_classes);
    return 0;
}

static int open_data(bench *b)
{
    cae_loader_cfg lc;
    CAE_TRY(cae_dataset_open(&b->ds, b->a.data_path));
    printf("data: %s\n", cae_dataset_describe(b->ds));
    CAE_TRY(cae_loader_cfg_from_args(&b->a, b->ds, 0, 1, &lc));
    /* cae_loader_new refuses a data set smaller than one global batch */
    CAE_TRY(cae_loader_new(&b->loader, &lc));
    b->steps_per_epoch = cae_loader_steps_per_epoch(b->loader);
    return cae_loader_start(b->loader, 0, 0);
}

/* The device's GEMM rate on its chosen back end: a square n^3 product,
 * best of a few repetitions. Its buffers are gone before the model plans
 * its memory, and the memory high-water mark is reset after. */
static int measure_peak(bench *b)
{
    cae_ctx *ctx = &b->ctx;
    size_t n = ctx->cpu_defaults ? 1024 : 4096;
    cl_mem m[3] = {NULL, NULL, NULL};
    double best = 1e30;
    int rc = -1;
    for (int i = 0; i < 3; i++)
        if (cae_alloc(ctx, n * n * 4, &m[i]) != 0)
            goto out;
    for (int i = 0; i < 3; i++) {
        cae_buf x = {m[i], 0};
        if (cae_fill_float(ctx, x, 0.5f / (float)(i + 1), n * n) != 0)
            goto out;
    }
    for (int rep = 0; rep < 5; rep++) {
        double t0;
        cae_buf A = {m[0], 0}, B = {m[1], 0}, C = {m[2], 0};
        if (cae_finish(ctx) != 0)
            goto out;
        t0 = cae_now_ms();
        if (cae_gemm(ctx, 0, 0, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n) != 0 || cae_finish(ctx) != 0)
            goto out;
        if (rep > 0 && cae_now_ms() - t0 < best) /* the first one warms up */
            best = cae_now_ms() - t0;
    }
    b->peak_gflops = 2.0 * (double)n * (double)n * (double)n / (best * 1e-3) * 1e-9;
    printf("peak: %.1f GFLOP/s (%s GEMM %zu^3, best of 4)\n", b->peak_gflops,
           cae_gemm_backend(ctx) == CAE_GEMM_HOST ? "host BLAS" : "CLBlast", n);
    rc = 0;
out:
    for (int i = 0; i < 3; i++)
        cae_release(&m[i]);
    ctx->dev_bytes_peak = ctx->dev_bytes;
    return rc;
}

static int setup(bench *b)
{
    cae_args *a = &b->a;
    cae_ctx_options opt = {.gemm = a->gemm, .profiling = 1};
    char desc[512];

    /* as cae-cl-train decides it; --synthetic draws token labels */
    CAE_TRY(cae_args_choose_target(&b->a, b->a.synthetic));
    CAE_TRY(cae_config_finish(&a->model));
    if (a->synthetic)
        CAE_TRY(make_synthetic(b));
    else
        CAE_TRY(open_data(b));
    CAE_TRY(cae_ctx_init(&b->ctx, &opt));
    b->have_ctx = 1;
    b->ctx.profiling = 0; /* the queue can profile; events only in the profiled steps */
    cae_config_describe(&a->model, desc, sizeof desc);
    printf("device: %s (%s), GEMM: %s\nmodel: %s\nbatch: %d, %s\n", b->ctx.device_name,
           b->ctx.platform_name, cae_gemm_backend(&b->ctx) == CAE_GEMM_HOST ? "host BLAS" : "CLBlast", desc,
           a->batch_size, a->synthetic ? "synthetic (random images, block masks, token labels)"
                                       : a->model.pixel_target ? "real data, pixel target"
                                                               : "real data, DALL-E tokenizer");
    CAE_TRY(measure_peak(b));
    CAE_TRY(cae_model_init(&b->model, &b->ctx, &a->model, (size_t)a->batch_size));
    b->have_model = 1;
    CAE_TRY(cae_model_init_weights(&b->model, (uint64_t)a->seed));
    CAE_TRY(cae_adamw_new(&b->opt, &b->ctx, &b->model.table, &b->model.params, &b->model.grads));
    CAE_TRY(cae_alloc(&b->ctx, 4, &b->grad_norm.mem));
    if (!a->synthetic && !a->model.pixel_target) {
        size_t S2 = (size_t)a->second_input_size;
        CAE_TRY(cae_dalle_load(&b->dalle, &b->ctx, a->discrete_vae_weight_path, (size_t)a->batch_size,
                               a->second_input_size));
        if (cae_dalle_vocab(b->dalle) != a->model.decoder_num_classes) {
            cae_errorf("%s: vocabulary %d, but --decoder_num_classes is %d", a->discrete_vae_weight_path,
                       cae_dalle_vocab(b->dalle), a->model.decoder_num_classes);
            return -1;
        }
        CAE_TRY(cae_alloc(&b->ctx, (size_t)a->batch_size * 3 * S2 * S2 * 4, &b->tok_view.mem));
    }
    return 0;
}

/* Upload the next batch (and tokenize it, timed on its own). */
static int next_batch(bench *b)
{
    cae_args *a = &b->a;
    cae_batch *bt;
    int r;
    if (a->synthetic) {
        size_t i = b->step % SYNTH_BATCHES, B = (size_t)a->batch_size, S = (size_t)a->model.input_size;
        return cae_model_set_batch(&b->model, b->samples + i * B * 3 * S * S,
                                   b->masks + i * B * (size_t)a->model.num_patches,
                                   b->labels + i * B * (size_t)a->model.num_mask_patches);
    }
    if (b->in_epoch == b->steps_per_epoch) {
        b->in_epoch = 0;
        CAE_TRY(cae_loader_start(b->loader, ++b->epoch, 0));
    }
    r = cae_loader_next(b->loader, &bt);
    if (r != 0) {
        if (r == 1)
            cae_errorf("internal error: the loader ended its epoch early");
        return -1;
    }
    b->in_epoch++;
    b->data_wait_ms += bt->wait_ms;
    r = cae_model_set_inputs(&b->model, bt->samples, bt->mask);
    if (r == 0 && b->dalle) {
        size_t S2 = (size_t)a->second_input_size;
        double t0;
        r = cae_write(&b->ctx, b->tok_view, bt->tok_view, bt->batch * 3 * S2 * S2 * 4);
        t0 = cae_now_ms();
        if (r == 0)
            r = cae_dalle_labels(b->dalle, cae_model_labels(&b->model), b->tok_view,
                                 cae_model_masked_idx(&b->model), (size_t)a->model.num_mask_patches);
        if (r == 0)
            r = cae_finish(&b->ctx);
        b->tok_ms += cae_now_ms() - t0;
        b->tok_calls++;
    }
    cae_loader_release(b->loader, bt);
    return r;
}

static int one_step(bench *b)
{
    cae_adamw_hparams h = {.lr = 1e-4, .weight_decay = b->a.weight_decay, .beta1 = 0.9,
                           .beta2 = 0.999, .eps = b->a.opt_eps, .clip_grad = b->a.clip_grad};
    cae_losses l;
    CAE_TRY(next_batch(b));
    CAE_TRY(cae_model_set_drop_path(&b->model, (uint64_t)b->a.seed, b->step));
    CAE_TRY(cae_model_step(&b->model, &l));
    CAE_TRY(cae_adamw_step(b->opt, &h, b->grad_norm));
    CAE_TRY(cae_finish(&b->ctx));
    b->step++;
    if (!isfinite(l.loss)) {
        cae_errorf("non-finite loss %g at step %llu", l.loss, (unsigned long long)b->step);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

typedef struct {
    double median, min, max, mean, stdev;
} spread;

static spread summarize(double *ms, size_t n)
{
    spread s = {0, 0, 0, 0, 0};
    qsort(ms, n, sizeof *ms, cmp_double);
    s.min = ms[0];
    s.max = ms[n - 1];
    s.median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    for (size_t i = 0; i < n; i++)
        s.mean += ms[i] / (double)n;
    for (size_t i = 0; i < n; i++)
        s.stdev += (ms[i] - s.mean) * (ms[i] - s.mean) / (double)n;
    s.stdev = sqrt(s.stdev);
    return s;
}

static int set_num(json_t *o, const char *key, double v)
{
    json_t *x = json_real(v);
    if (!x || json_object_set_new(o, key, x) != 0) {
        cae_errorf("--json: cannot set %s", key);
        return -1;
    }
    return 0;
}

static int write_json(const bench *b, const char *path, const spread *s, double ips, const cae_flops *f,
                      double mfu, const cae_profile *prof)
{
    json_t *o = json_object(), *flops = json_object(), *ops = json_array();
    int rc = -1;
    char desc[512];
    if (!o || !flops || !ops) {
        cae_errorf("--json %s: out of memory", path);
        goto out;
    }
    cae_config_describe(&b->a.model, desc, sizeof desc);
    json_object_set_new(o, "device", json_string(b->ctx.device_name));
    json_object_set_new(o, "gemm", json_string(cae_gemm_backend(&b->ctx) == CAE_GEMM_HOST ? "host" : "clblast"));
    json_object_set_new(o, "model", json_string(desc));
    json_object_set_new(o, "synthetic", json_boolean(b->a.synthetic));
    json_object_set_new(o, "batch_size", json_integer(b->a.batch_size));
    json_object_set_new(o, "steps", json_integer(b->a.bench_steps));
    if (set_num(o, "images_per_s", ips) || set_num(o, "ms_per_step", s->median) ||
        set_num(o, "ms_per_step_min", s->min) || set_num(o, "ms_per_step_max", s->max) ||
        set_num(o, "ms_per_step_stdev", s->stdev) || set_num(o, "flops_per_step", f->total) ||
        set_num(o, "model_flops_per_s", f->total / (s->median * 1e-3)) ||
        set_num(o, "peak_flops_per_s", b->peak_gflops * 1e9) || set_num(o, "mfu", mfu) ||
        set_num(o, "peak_device_bytes", (double)b->ctx.dev_bytes_peak) ||
        set_num(o, "data_wait_ms_per_step", b->data_wait_ms / (double)b->a.bench_steps) ||
        set_num(flops, "encoder", f->encoder) || set_num(flops, "alignment", f->alignment) ||
        set_num(flops, "projection", f->projection) || set_num(flops, "regressor", f->regressor) ||
        set_num(flops, "decoder", f->decoder) || set_num(flops, "head", f->head) ||
        set_num(flops, "loss", f->loss) || set_num(flops, "optimizer", f->optimizer))
        goto out;
    if (b->tok_calls && set_num(o, "tokenizer_ms_per_image",
                                b->tok_ms / (double)b->tok_calls / (double)b->a.batch_size))
        goto out;
    for (size_t i = 0; i < prof->n; i++) {
        json_t *r = json_object();
        if (!r || json_array_append_new(ops, r) != 0)
            goto out;
        json_object_set_new(r, "name", json_string(prof->rows[i].name));
        json_object_set_new(r, "ms_per_step", json_real(prof->rows[i].total_ms / PROFILED_STEPS));
        json_object_set_new(r, "launches_per_step",
                            json_real((double)prof->rows[i].launches / PROFILED_STEPS));
    }
    json_object_set(o, "flops", flops);
    json_object_set(o, "ops", ops);
    json_object_set_new(o, "launches_per_step", json_real((double)cae_profile_launches(prof) / PROFILED_STEPS));
    if (json_dump_file(o, path, JSON_INDENT(2)) != 0) {
        cae_errorf("--json %s: cannot write", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(flops);
    json_decref(ops);
    json_decref(o);
    return rc;
}

static int run(bench *b)
{
    cae_args *a = &b->a;
    size_t n = (size_t)a->bench_steps;
    double *ms = calloc(n, sizeof *ms), ips, mfu, wait_ms, tok_ms;
    size_t tok_calls;
    cae_profile prof;
    cae_flops f;
    spread s;
    int rc = -1;

    cae_profile_init(&prof);
    if (!ms) {
        cae_errorf("out of host memory");
        return -1;
    }
    for (int i = 0; i < a->warmup_steps_bench; i++)
        if (one_step(b) != 0)
            goto out;
    b->data_wait_ms = 0;
    b->tok_ms = 0;
    b->tok_calls = 0;
    for (size_t i = 0; i < n; i++) {
        double t0 = cae_now_ms();
        if (one_step(b) != 0)
            goto out;
        ms[i] = cae_now_ms() - t0;
    }
    /* the op table: a few more steps with an event per launch (their data
     * wait and tokenizer time are left out of the timed figures) */
    wait_ms = b->data_wait_ms;
    tok_ms = b->tok_ms;
    tok_calls = b->tok_calls;
    b->ctx.profiling = 1;
    for (int i = 0; i < PROFILED_STEPS; i++)
        if (one_step(b) != 0 || cae_profile_collect(&prof, &b->ctx) != 0) {
            b->ctx.profiling = 0;
            goto out;
        }
    b->ctx.profiling = 0;
    b->data_wait_ms = wait_ms;
    b->tok_ms = tok_ms;
    b->tok_calls = tok_calls;
    cae_profile_sort(&prof);

    s = summarize(ms, n);
    ips = (double)a->batch_size * 1000.0 / s.median;
    cae_flops_count(&a->model, (size_t)a->batch_size, b->model.table.total, &f);
    mfu = f.total / (s.median * 1e-3) / (b->peak_gflops * 1e9);
    printf("parameters: %zu\n", b->model.table.total);
    cae_flops_print(&f, stdout);
    printf("steps: %d warm-up, %zu timed\n", a->warmup_steps_bench, n);
    printf("images/s: %.2f\n", ips);
    printf("ms/step: median %.2f  min %.2f  max %.2f  stdev %.2f\n", s.median, s.min, s.max, s.stdev);
    printf("model FLOP/s: %.2f GFLOP/s\n", f.total / (s.median * 1e-3) * 1e-9);
    printf("MFU: %.1f%% of %.1f GFLOP/s\n", 100.0 * mfu, b->peak_gflops);
    printf("peak device memory: %.1f MiB (%zu bytes)\n", (double)b->ctx.dev_bytes_peak / 1048576.0,
           b->ctx.dev_bytes_peak);
    if (!a->synthetic)
        printf("data wait: %.2f ms/step (%.1f%% of the step)\n", b->data_wait_ms / (double)n,
               100.0 * b->data_wait_ms / (double)n / s.median);
    if (b->tok_calls)
        printf("tokenizer: %.2f ms/image (%.2f ms per batch, included in ms/step)\n",
               b->tok_ms / (double)b->tok_calls / (double)a->batch_size, b->tok_ms / (double)b->tok_calls);
    printf("per-op device time (%d profiled steps, events per launch):\n", PROFILED_STEPS);
    cae_profile_print(&prof, stdout, PROFILED_STEPS, 15);
    if (a->json && write_json(b, a->json, &s, ips, &f, mfu, &prof) != 0)
        goto out;
    rc = 0;
out:
    cae_profile_free(&prof);
    free(ms);
    return rc;
}

static void teardown(bench *b)
{
    if (b->loader)
        cae_loader_free(b->loader);
    if (b->ds)
        cae_dataset_free(b->ds);
    if (b->dalle)
        cae_dalle_free(b->dalle);
    if (b->opt)
        cae_adamw_free(b->opt);
    cae_release(&b->tok_view.mem);
    cae_release(&b->grad_norm.mem);
    if (b->have_model)
        cae_model_free(&b->model);
    if (b->have_ctx)
        cae_ctx_free(&b->ctx);
    free(b->samples);
    free(b->masks);
    free(b->labels);
}

int main(int argc, char **argv)
{
    static bench b;
    int rc;
    if (cae_args_parse(&b.a, argc, argv) != 0)
        return 2;
    if (b.a.help) {
        cae_args_usage(stdout, "cae-cl-bench",
                       "Times warm-up then --bench_steps training steps (model step + AdamW).\n"
                       "  --synthetic  random images, masks and labels; --json PATH  results as JSON");
        return 0;
    }
    if (b.a.list_devices)
        return cae_list_devices(stdout) == 0 ? 0 : 1;
    if (b.a.bench_steps < 1 || b.a.warmup_steps_bench < 0) {
        cae_errorf("--bench_steps must be >= 1 and --warmup_steps_bench >= 0");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = setup(&b) == 0 && run(&b) == 0 ? 0 : 1;
    teardown(&b);
    return rc;
}

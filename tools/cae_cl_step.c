/* cae-cl-step: one CAE training step from files, the conformance tool.
 *
 *   cae-cl-step [model flags] --weights W.safetensors --batch B.safetensors
 *               [--out O.safetensors] [--check E.safetensors] [--gemm auto|clblast|host]
 *
 * Without --weights the official initialization from --seed is used; without
 * --batch a synthetic batch of --batch_size images (for timing). With
 * --check, prints per tensor the max abs and relative L2 error and PASS or
 * FAIL, and exits 1 on FAIL.
 */
#include "train/args.h"
#include "runtime/errors.h"
#include "model/model.h"
#include "train/step_io.h"

#include <stdlib.h>
#include <time.h>

#define TOLERANCE 1e-4

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int run(const cae_args *a)
{
    cae_ctx ctx;
    cae_ctx_options opt = {.gemm = a->gemm};
    cae_model m;
    cae_config cfg = a->model;
    cae_losses l;
    size_t batch = (size_t)a->batch_size;
    char desc[512];
    int rc = 1, steps = a->steps > 0 ? a->steps : 1;
    double *ms = NULL;

    if (a->batch && cae_step_batch_size(a->batch, &batch) != 0)
        return 1;
    if (cae_config_finish(&cfg) != 0)
        return 1;
    if (cae_ctx_init(&ctx, &opt) != 0)
        return 1;
    cae_config_describe(&cfg, desc, sizeof desc);
    printf("device: %s (%s), GEMM: %s\nmodel: %s\nbatch: %zu\n", ctx.device_name,
           ctx.platform_name, cae_gemm_backend(&ctx) == CAE_GEMM_HOST ? "host BLAS (native kernel)" : "CLBlast",
           desc, batch);
    if (cae_model_init(&m, &ctx, &cfg, batch) != 0)
        goto out_ctx;
    printf("parameters: %zu in %d buffer(s); activations: %.1f MiB in %d buffer(s)\n", m.table.total,
           m.table.n_chunks, m.act_bytes / 1048576.0, m.n_act_mem);
    if (a->weights ? cae_step_load_weights(&m, a->weights) != 0
                   : cae_model_init_weights(&m, (uint64_t)a->seed) != 0)
        goto out_model;
    if (a->batch ? cae_step_load_batch(&m, a->batch) != 0
                 : cae_step_synthetic_batch(&m, (uint64_t)a->seed + 1) != 0)
        goto out_model;
    if (cae_model_set_drop_path(&m, (uint64_t)a->seed, 0) != 0)
        goto out_model;
    ms = calloc((size_t)steps, sizeof *ms);
    if (!ms)
        goto out_model;
    for (int i = 0; i < steps; i++) {
        double t0 = now_ms();
        if (cae_model_step(&m, &l) != 0)
            goto out_model;
        ms[i] = now_ms() - t0;
    }
    printf("loss %.6f  loss_main %.6f  loss_align %.6f  mlm_acc %.4f\n", l.loss, l.loss_main,
           l.loss_align, l.mlm_acc);
    printf("step time: first %.1f ms", ms[0]);
    if (steps > 1) {
        double best = ms[1], sum = 0;
        for (int i = 1; i < steps; i++) {
            sum += ms[i];
            if (ms[i] < best)
                best = ms[i];
        }
        printf(", then mean %.1f ms, best %.1f ms over %d steps", sum / (steps - 1), best, steps - 1);
    }
    printf("\n");
    if (a->out && cae_step_write_outputs(&m, &l, a->out) != 0)
        goto out_model;
    if (a->out)
        printf("wrote %s\n", a->out);
    rc = 0;
    if (a->check) {
        int c = cae_step_check(&m, &l, a->check, TOLERANCE, stdout);
        rc = c == 0 ? 0 : 1;
    }
out_model:
    free(ms);
    cae_model_free(&m);
out_ctx:
    cae_ctx_free(&ctx);
    return rc;
}

int main(int argc, char **argv)
{
    cae_args a;
    if (cae_args_parse(&a, argc, argv) != 0)
        return 2;
    if (a.help) {
        cae_args_usage(stdout, "cae-cl-step",
                       "One CAE training step from files; compares with expected outputs (--check).\n"
                       "  --steps N     run the step N times and report times (default 1)");
        return 0;
    }
    if (a.list_devices)
        return cae_list_devices(stdout) == 0 ? 0 : 1;
    /* token labels come from the batch file: no tokenizer is needed */
    if (cae_args_choose_target(&a, 1) != 0)
        return 1;
    return run(&a);
}

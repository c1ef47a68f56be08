/* bench_dalle.c: times cae_dalle_labels on random weights (built with the
 * tests, run by hand; not part of `make check`).
 *
 *   ./bench-dalle [--batch 8] [--size 112] [--n_hid 256] [--vocab 8192]
 *                     [--reps 3] [--gemm auto|clblast|host]
 *
 * Writes random weights of the real architecture to a temporary safetensors
 * file, loads them, runs one warm-up call, then --reps timed calls (each
 * ends with a queue wait) and one call with per-stage timing.
 *
 * The numbers measured with it (PoCL on 2 cores, batch 8 at 112x112, the
 * real width) and the clFFT comparison are in src/tokenizer/dalle.c's
 * header comment. */
#include "runtime/runtime.h"
#include "safetensors/safetensors.h"
#include "runtime/gemm.h"
#include "tokenizer/dalle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static float uniform(void)   /* [0, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

/* Add NAME.w [out,in,k,k] (uniform with variance 1/fan_in) and NAME.b. */
static int add_conv(cae_st_writer *w, const char *name, int n_in, int n_out, int k)
{
    char key[128];
    size_t n = (size_t)n_out * n_in * k * k;
    int64_t ws[4] = {n_out, n_in, k, k}, bs[1] = {n_out};
    float *x = malloc(n * sizeof *x), a = sqrtf(3.0f / (float)(n_in * k * k));
    int rc;
    if (x == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        x[i] = a * (2.0f * uniform() - 1.0f);
    snprintf(key, sizeof key, "%s.w", name);
    rc = cae_st_writer_add(w, key, CAE_DT_F32, 4, ws, x);
    for (int i = 0; i < n_out; i++)
        x[i] = 0.2f * uniform() - 0.1f;
    snprintf(key, sizeof key, "%s.b", name);
    if (rc == 0)
        rc = cae_st_writer_add(w, key, CAE_DT_F32, 1, bs, x);
    free(x);
    return rc;
}

static int write_weights(const char *path, int n_hid, int vocab)
{
    cae_st_writer *w = cae_st_writer_new();
    char name[128];
    int width = n_hid, rc = 0;
    if (w == NULL)
        return -1;
    rc |= add_conv(w, "blocks.input", 3, n_hid, 7);
    for (int g = 1; g <= 4; g++) {
        int n_out = n_hid << (g - 1);
        for (int b = 1; b <= 2; b++) {
            if (width != n_out) {
                snprintf(name, sizeof name, "blocks.group_%d.block_%d.id_path", g, b);
                rc |= add_conv(w, name, width, n_out, 1);
            }
            for (int c = 1; c <= 4; c++) {
                snprintf(name, sizeof name, "blocks.group_%d.block_%d.res_path.conv_%d", g, b, c);
                rc |= add_conv(w, name, c == 1 ? width : n_out / 4, c == 4 ? n_out : n_out / 4,
                               c == 4 ? 1 : 3);
            }
            width = n_out;
        }
    }
    rc |= add_conv(w, "blocks.output.conv", width, vocab, 1);
    if (rc == 0)
        rc = cae_st_writer_write(w, path);
    cae_st_writer_free(w);
    return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
    int batch = 8, size = 112, n_hid = 256, vocab = 8192, reps = 3;
    cae_ctx_options opt = {.gemm = CAE_GEMM_AUTO};
    cae_ctx ctx;
    cae_dalle *d = NULL;
    char path[4096];
    const char *tmp = getenv("TMPDIR");
    float *view;
    int *idx;
    size_t M, nview;
    cl_mem view_mem = NULL, idx_mem = NULL, lab_mem = NULL;
    double best = INFINITY, sum = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batch") == 0)
            batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--n_hid") == 0)
            n_hid = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--vocab") == 0)
            vocab = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--gemm") == 0) {
            if (cae_gemm_choice_parse(argv[i + 1], &opt.gemm) != 0) {
                fprintf(stderr, "bench-dalle: bad --gemm %s\n", argv[i + 1]);
                return 2;
            }
        } else {
            fprintf(stderr, "bench-dalle: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || size < 8 || size % 8 || n_hid < 4 || n_hid % 4 || vocab < 1 || reps < 1) {
        fprintf(stderr, "bench-dalle: bad sizes\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/bench-dalle-%d.safetensors", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    if (write_weights(path, n_hid, vocab) != 0)
        return 1;
    if (cae_ctx_init(&ctx, &opt) != 0) {
        unlink(path);
        return 1;
    }
    if (cae_dalle_load(&d, &ctx, path, (size_t)batch, size) != 0) {
        unlink(path);
        return 1;
    }
    unlink(path);

    M = (size_t)(size / 8) * (size / 8) / 2;
    nview = (size_t)batch * 3 * size * size;
    view = malloc(nview * sizeof *view);
    idx = malloc((size_t)batch * M * sizeof *idx);
    if (!view || !idx)
        return 1;
    for (size_t i = 0; i < nview; i++)
        view[i] = 0.1f + 0.8f * uniform();
    for (size_t i = 0; i < (size_t)batch * M; i++)
        idx[i] = (int)(2 * (i % M));
    if (cae_alloc(&ctx, nview * 4, &view_mem) || cae_alloc(&ctx, batch * M * 4, &idx_mem) ||
        cae_alloc(&ctx, batch * M * 4, &lab_mem) ||
        cae_write(&ctx, (cae_buf){view_mem, 0}, view, nview * 4) ||
        cae_write(&ctx, (cae_buf){idx_mem, 0}, idx, batch * M * 4))
        return 1;

    printf("device %s, gemm %s, batch %d at %dx%d, n_hid %d, vocab %d\n", ctx.device_name,
           cae_gemm_backend(&ctx) == CAE_GEMM_HOST ? "host" : "clblast", batch, size, size, n_hid, vocab);
    for (int r = -1; r < reps; r++) {   /* r = -1: warm-up */
        double t0 = now(), t;
        if (cae_dalle_labels(d, (cae_buf){lab_mem, 0}, (cae_buf){view_mem, 0}, (cae_buf){idx_mem, 0}, M) ||
            cae_finish(&ctx))
            return 1;
        t = now() - t0;
        if (r < 0) {
            printf("warm-up: %.3f s\n", t);
            continue;
        }
        sum += t;
        if (t < best)
            best = t;
    }
    printf("cae_dalle_labels: best %.3f s, mean %.3f s over %d calls (%.1f images/s)\n", best,
           sum / reps, reps, batch / best);
    cae_dalle_set_timing(d, 1);
    if (cae_dalle_labels(d, (cae_buf){lab_mem, 0}, (cae_buf){view_mem, 0}, (cae_buf){idx_mem, 0}, M))
        return 1;
    cae_dalle_print_timing(d, stdout);

    cae_release(&view_mem);
    cae_release(&idx_mem);
    cae_release(&lab_mem);
    free(view);
    free(idx);
    cae_dalle_free(d);
    cae_ctx_free(&ctx);
    return 0;
}

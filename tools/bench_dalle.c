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

typedef struct {
    int batch, size, n_hid, vocab, reps;
    cae_gemm_choice gemm;
} flags;

/* 0, or 2 after one line naming the bad flag. */
static int parse_flags(int argc, char **argv, flags *f)
{
    *f = (flags){8, 112, 256, 8192, 3, CAE_GEMM_AUTO};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batch") == 0)
            f->batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            f->size = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--n_hid") == 0)
            f->n_hid = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--vocab") == 0)
            f->vocab = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            f->reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--gemm") == 0) {
            if (cae_gemm_choice_parse(argv[i + 1], &f->gemm) != 0) {
                fprintf(stderr, "bench-dalle: bad --gemm %s\n", argv[i + 1]);
                return 2;
            }
        } else {
            fprintf(stderr, "bench-dalle: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (f->batch < 1 || f->size < 8 || f->size % 8 || f->n_hid < 4 || f->n_hid % 4 ||
        f->vocab < 1 || f->reps < 1) {
        fprintf(stderr, "bench-dalle: bad sizes\n");
        return 2;
    }
    return 0;
}

/* The device and a tokenizer of random weights (written to a temporary
 * file, removed once loaded). */
static int open_tokenizer(const flags *f, cae_ctx *ctx, cae_dalle **d)
{
    cae_ctx_options opt = {.gemm = f->gemm};
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    int rc;
    snprintf(path, sizeof path, "%s/bench-dalle-%d.safetensors", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    if (write_weights(path, f->n_hid, f->vocab) != 0)
        return -1;
    rc = cae_ctx_init(ctx, &opt) == 0 && cae_dalle_load(d, ctx, path, (size_t)f->batch, f->size) == 0
             ? 0 : -1;
    unlink(path);
    return rc;
}

/* The device's inputs: random views [batch,3,size,size] and M masked
 * positions per image; the labels' buffer. */
typedef struct {
    size_t M, nview;
    cl_mem view_mem, idx_mem, lab_mem;
} inputs;

static int make_inputs(const flags *f, cae_ctx *ctx, inputs *in)
{
    size_t M = (size_t)(f->size / 8) * (f->size / 8) / 2, batch = (size_t)f->batch;
    size_t nview = batch * 3 * (size_t)f->size * (size_t)f->size;
    float *view = malloc(nview * sizeof *view);
    int *idx = malloc(batch * M * sizeof *idx), rc;
    in->M = M;
    in->nview = nview;
    if (!view || !idx) {
        free(view);
        free(idx);
        return -1;
    }
    for (size_t i = 0; i < nview; i++)
        view[i] = 0.1f + 0.8f * uniform();
    for (size_t i = 0; i < batch * M; i++)
        idx[i] = (int)(2 * (i % M));
    rc = cae_alloc(ctx, nview * 4, &in->view_mem) || cae_alloc(ctx, batch * M * 4, &in->idx_mem) ||
                 cae_alloc(ctx, batch * M * 4, &in->lab_mem) ||
                 cae_write(ctx, (cae_buf){in->view_mem, 0}, view, nview * 4) ||
                 cae_write(ctx, (cae_buf){in->idx_mem, 0}, idx, batch * M * 4)
             ? -1 : 0;
    free(view);
    free(idx);
    return rc;
}

static int labels(cae_dalle *d, const inputs *in)
{
    return cae_dalle_labels(d, (cae_buf){in->lab_mem, 0}, (cae_buf){in->view_mem, 0},
                            (cae_buf){in->idx_mem, 0}, in->M);
}

/* A warm-up, reps timed calls, then one call with the tokenizer's own
 * per-stage timing. */
static int time_labels(const flags *f, cae_ctx *ctx, cae_dalle *d, const inputs *in)
{
    double best = INFINITY, sum = 0;
    printf("device %s, gemm %s, batch %d at %dx%d, n_hid %d, vocab %d\n", ctx->device_name,
           cae_gemm_backend(ctx) == CAE_GEMM_HOST ? "host" : "clblast", f->batch, f->size, f->size,
           f->n_hid, f->vocab);
    for (int r = -1; r < f->reps; r++) { /* r = -1: warm-up */
        double t0 = now(), t;
        if (labels(d, in) || cae_finish(ctx))
            return -1;
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
           sum / f->reps, f->reps, f->batch / best);
    cae_dalle_set_timing(d, 1);
    if (labels(d, in))
        return -1;
    cae_dalle_print_timing(d, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    flags f;
    cae_ctx ctx;
    cae_dalle *d = NULL;
    inputs in = {0};
    int rc = parse_flags(argc, argv, &f);
    if (rc != 0)
        return rc;
    if (open_tokenizer(&f, &ctx, &d) != 0)
        return 1;
    if (make_inputs(&f, &ctx, &in) != 0 || time_labels(&f, &ctx, d, &in) != 0)
        return 1;
    cae_release(&in.view_mem);
    cae_release(&in.idx_mem);
    cae_release(&in.lab_mem);
    cae_dalle_free(d);
    cae_ctx_free(&ctx);
    return 0;
}

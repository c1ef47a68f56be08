/* dalle.c: the DALL-E dVAE encoder forward (dalle.h) as im2col + GEMM.
 *
 * Every convolution is one GEMM per chunk of images: weights [out, in*k*k]
 * (the file's [out,in,k,k] as it lies) times the im2col matrix
 * [in*k*k, images*H*W]; 1x1 convolutions skip im2col and multiply the
 * activations directly. Inside the encoder the activations are laid out
 * [C, B, H, W] ("CNHW"), so a 1x1 convolution is a single GEMM over the
 * whole batch and a chunk of images is a column range of one matrix. The
 * caller's view is [B,3,S,S] and the logits [B, vocab, G, G].
 *
 * A residual block writes its output in place (or, when the widths differ,
 * its id_path GEMM writes it), then conv_4 adds into it with alpha = 1/64
 * and beta = 1, and one kernel adds the combined bias
 * post_gain * conv_4.b + id_path.b. conv_1 reads ReLU(x) through im2col;
 * conv_1..3 store their outputs after the ReLU that every consumer applies;
 * the last block applies the output ReLU itself.
 *
 * Device memory is planned at load for (batch, image_size): two activation
 * buffers, two for the narrow hidden layers, the im2col matrix (a chunk of
 * images, at most COL_BUDGET floats unless one image needs more) and the
 * logits. cae_dalle_labels allocates nothing.
 *
 * Measured (./bench-dalle) on PoCL, 2 cores of an AMD EPYC (shared
 * with other jobs: repeat runs vary by 5-40%), OpenBLAS, --gemm host, batch
 * 8 at 112x112, n_hid 256, vocab 8192 (52 GFLOP per image): 2.39 s per
 * call, 3.3 images/s (GEMMs 81%, im2col 15%, other kernels 4%); --gemm
 * clblast 4.0 s; PyTorch 1.13 (oneDNN) on the same 2 cores 1.78 s. The 7x7
 * input convolution (im2col + GEMM + bias) takes 43 ms of it. An FFT
 * convolution through clFFT 2.12 (tools/dalle-clfft-probe.c) needs 2 ms
 * for the 24 forward R2C transforms, 36-39 ms for the complex
 * multiply-accumulate over the 3 input channels and 160-163 ms for the 2048
 * inverse C2R transforms (planes padded to 120 or 128): 198 ms before any
 * padding or cropping copies, 4.6x slower, so clFFT is not used (and not a
 * dependency). The CPU-shaped kernels (see cl/conv.cl) were 5-15x faster
 * than one work-item per element here.
 * Kernels: cl/conv.cl. */
#include "tokenizer/dalle.h"

#include "runtime/gemm.h"
#include "safetensors/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_GROUPS 4
#define N_BLOCKS 2                       /* per group */
#define N_LAYERS (N_GROUPS * N_BLOCKS)   /* the official n_layers: post_gain 1/64 */
#define COL_BUDGET ((size_t)64 << 20)    /* floats in the im2col matrix (256 MiB) */
#define N_SECTIONS (N_GROUPS + 2)        /* input, group_1..4, output */

enum { CAT_IM2COL, CAT_GEMM, CAT_OTHER, N_CATS };

typedef struct {
    char name[64];        /* state_dict prefix, "blocks.group_1.block_1.res_path.conv_1" */
    int n_in, n_out, k;
    size_t w_off, b_off;  /* element offsets in the weight buffer */
} dalle_conv;

typedef struct {
    int n_in, n_out, has_id;
    dalle_conv id, conv[4];
    size_t bias_off;      /* post_gain * conv_4.b (+ id_path.b) */
} dalle_block;

struct cae_dalle {
    cae_ctx *ctx;
    int n_hid, vocab, image_size, grid;
    size_t batch;
    dalle_conv input, output;
    dalle_block blocks[N_GROUPS][N_BLOCKS];
    cl_mem weights;
    cl_mem act, pool, hid[2], col, logits;
    size_t col_cap;       /* floats in col */
    cl_kernel k_im2col, k_bias, k_pool, k_argmax;
    cae_kernel_id im2col_id; /* which im2col k_im2col is */
    int cpu_shapes;       /* im2col by rows, long contiguous runs per work-item */
    int timing;
    double seconds[N_SECTIONS][N_CATS], last;
    size_t calls;
};

static const char *const section_names[N_SECTIONS] = {"input", "group_1", "group_2",
                                                      "group_3", "group_4", "output"};

/* ------------------------------------------------------------ timing */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* When timing, wait for the queue and charge the time since the last mark
 * to (section, category); otherwise nothing (no waits in normal runs). */
static int mark(cae_dalle *d, int section, int cat)
{
    double t;
    if (!d->timing)
        return 0;
    CAE_TRY(cae_finish(d->ctx));
    t = now();
    d->seconds[section][cat] += t - d->last;
    d->last = t;
    return 0;
}

void cae_dalle_set_timing(cae_dalle *d, int on)
{
    d->timing = on;
    memset(d->seconds, 0, sizeof d->seconds);
    d->calls = 0;
}

void cae_dalle_print_timing(const cae_dalle *d, FILE *out)
{
    double total[N_CATS] = {0, 0, 0}, calls = d->calls ? (double)d->calls : 1.0;
    fprintf(out, "%-8s %10s %10s %10s %10s  (ms per call, %zu calls)\n", "section", "im2col",
            "gemm", "other", "total", d->calls);
    for (int s = 0; s < N_SECTIONS; s++) {
        double sum = 0;
        for (int c = 0; c < N_CATS; c++) {
            sum += d->seconds[s][c];
            total[c] += d->seconds[s][c];
        }
        fprintf(out, "%-8s %10.1f %10.1f %10.1f %10.1f\n", section_names[s],
                1e3 * d->seconds[s][0] / calls, 1e3 * d->seconds[s][1] / calls,
                1e3 * d->seconds[s][2] / calls, 1e3 * sum / calls);
    }
    fprintf(out, "%-8s %10.1f %10.1f %10.1f %10.1f\n", "all", 1e3 * total[0] / calls,
            1e3 * total[1] / calls, 1e3 * total[2] / calls,
            1e3 * (total[0] + total[1] + total[2]) / calls);
}

/* ------------------------------------------------------------ loading */

static void conv_set(dalle_conv *c, int n_in, int n_out, int k, const char *fmt, int g, int b,
                     int i)
{
    snprintf(c->name, sizeof c->name, fmt, g, b, i);
    c->n_in = n_in;
    c->n_out = n_out;
    c->k = k;
}

/* Fill in every convolution's name and shape from n_hid and the vocabulary,
 * as the official Encoder builds them. */
static void plan_layers(cae_dalle *d)
{
    int width = d->n_hid;
    conv_set(&d->input, 3, d->n_hid, 7, "blocks.input", 0, 0, 0);
    for (int g = 0; g < N_GROUPS; g++) {
        int n_out = d->n_hid << g;
        for (int b = 0; b < N_BLOCKS; b++) {
            dalle_block *blk = &d->blocks[g][b];
            int n_in = width, hid = n_out / 4;
            const char *res = "blocks.group_%d.block_%d.res_path.conv_%d";
            blk->n_in = n_in;
            blk->n_out = n_out;
            blk->has_id = n_in != n_out;
            if (blk->has_id)
                conv_set(&blk->id, n_in, n_out, 1, "blocks.group_%d.block_%d.id_path", g + 1, b + 1, 0);
            conv_set(&blk->conv[0], n_in, hid, 3, res, g + 1, b + 1, 1);
            conv_set(&blk->conv[1], hid, hid, 3, res, g + 1, b + 1, 2);
            conv_set(&blk->conv[2], hid, hid, 3, res, g + 1, b + 1, 3);
            conv_set(&blk->conv[3], hid, n_out, 1, res, g + 1, b + 1, 4);
            width = n_out;
        }
    }
    conv_set(&d->output, width, d->vocab, 1, "blocks.output.conv", 0, 0, 0);
}

#define MAX_CONVS (2 + N_GROUPS * N_BLOCKS * 5)

/* Every convolution of the plan, in file order, for loops over all of them. */
static size_t all_convs(cae_dalle *d, dalle_conv **out)
{
    size_t n = 0;
    out[n++] = &d->input;
    for (int g = 0; g < N_GROUPS; g++)
        for (int b = 0; b < N_BLOCKS; b++) {
            if (d->blocks[g][b].has_id)
                out[n++] = &d->blocks[g][b].id;
            for (int i = 0; i < 4; i++)
                out[n++] = &d->blocks[g][b].conv[i];
        }
    out[n++] = &d->output;
    return n;
}

/* n_hid and the vocabulary from the shapes of the first and last weights. */
static int read_sizes(cae_dalle *d, const cae_st_file *f)
{
    const cae_st_tensor *in = cae_st_find(f, "blocks.input.w");
    const cae_st_tensor *out = cae_st_find(f, "blocks.output.conv.w");
    if (in == NULL || out == NULL) {
        cae_errorf("%s: tensor '%s': not found (not a DALL-E encoder from cae-cl-convert-dall-e?)",
                   f->path, in == NULL ? "blocks.input.w" : "blocks.output.conv.w");
        return -1;
    }
    if (in->ndim != 4 || in->shape[1] != 3 || in->shape[2] != 7 || in->shape[3] != 7 ||
        in->shape[0] < 4 || in->shape[0] % 4 != 0 || in->shape[0] > (1 << 20)) {
        cae_errorf("%s: tensor 'blocks.input.w': expected shape [n_hid, 3, 7, 7] with n_hid a "
                   "positive multiple of 4", f->path);
        return -1;
    }
    d->n_hid = (int)in->shape[0];
    if (out->ndim != 4 || out->shape[0] < 1 || out->shape[0] > (1 << 24)) {
        cae_errorf("%s: tensor 'blocks.output.conv.w': expected shape [vocab, %d, 1, 1]", f->path,
                   8 * d->n_hid);
        return -1;
    }
    d->vocab = (int)out->shape[0];
    return 0;
}

/* The tensor NAME.SUFFIX, checked against its expected shape. */
static const cae_st_tensor *expect(const cae_st_file *f, const dalle_conv *c, const char *suffix)
{
    char name[80];
    int64_t w[4] = {c->n_out, c->n_in, c->k, c->k};
    snprintf(name, sizeof name, "%s.%s", c->name, suffix);
    return cae_st_expect(f, name, CAE_DT_F32, suffix[0] == 'w' ? 4 : 1, w);
}

/* Refuse a tensor the plan does not know (another architecture). */
static int check_no_extra(const cae_st_file *f, dalle_conv **convs, size_t n)
{
    for (size_t t = 0; t < f->n_tensors; t++) {
        const char *name = f->tensors[t].name;
        int known = 0;
        for (size_t i = 0; i < n && !known; i++) {
            size_t len = strlen(convs[i]->name);
            known = strncmp(name, convs[i]->name, len) == 0 &&
                    (strcmp(name + len, ".w") == 0 || strcmp(name + len, ".b") == 0);
        }
        if (!known) {
            cae_errorf("%s: tensor '%s': unexpected in a DALL-E encoder with n_hid %d and %d "
                       "blocks per group", f->path, name, (int)convs[0]->n_out, N_BLOCKS);
            return -1;
        }
    }
    return 0;
}

/* Check every tensor, pack weights, biases and the blocks' combined output
 * biases into one host array and upload it. */
static int load_weights(cae_dalle *d, const cae_st_file *f)
{
    dalle_conv *convs[MAX_CONVS];
    size_t n = all_convs(d, convs), total = 0, at = 0;
    const float gain = 1.0f / (float)(N_LAYERS * N_LAYERS);
    float *host;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        if (expect(f, convs[i], "w") == NULL || expect(f, convs[i], "b") == NULL)
            return -1;
        total += (size_t)convs[i]->n_out * ((size_t)convs[i]->n_in * convs[i]->k * convs[i]->k + 1);
    }
    CAE_TRY(check_no_extra(f, convs, n));
    for (int g = 0; g < N_GROUPS; g++)
        for (int b = 0; b < N_BLOCKS; b++)
            total += (size_t)d->blocks[g][b].n_out;
    host = malloc(total * sizeof *host);
    if (host == NULL) {
        cae_errorf("%s: out of host memory for %zu weights", f->path, total);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const cae_st_tensor *w = expect(f, convs[i], "w"), *b = expect(f, convs[i], "b");
        convs[i]->w_off = at;
        memcpy(host + at, w->data, w->nbytes);
        at += w->numel;
        convs[i]->b_off = at;
        memcpy(host + at, b->data, b->nbytes);
        at += b->numel;
    }
    for (int g = 0; g < N_GROUPS; g++)
        for (int b = 0; b < N_BLOCKS; b++) {
            dalle_block *blk = &d->blocks[g][b];
            blk->bias_off = at;
            for (int c = 0; c < blk->n_out; c++)
                host[at + c] = gain * host[blk->conv[3].b_off + c] +
                               (blk->has_id ? host[blk->id.b_off + c] : 0.0f);
            at += (size_t)blk->n_out;
        }
    CAE_TRY_GOTO(cae_alloc(d->ctx, total * sizeof *host, &d->weights), done);
    CAE_TRY_GOTO(cae_write(d->ctx, (cae_buf){d->weights, 0}, host, total * sizeof *host), done);
done:
    free(host);
    return rc;
}

/* Floats of one image's im2col matrix for the largest k x k conv. */
static size_t col_per_image(const cae_dalle *d)
{
    size_t side = (size_t)d->image_size;
    size_t most = (size_t)d->input.n_in * d->input.k * d->input.k * side * side;
    for (int g = 0; g < N_GROUPS; g++, side /= 2)
        for (int b = 0; b < N_BLOCKS; b++)
            for (int c = 0; c < 3; c++) {
                const dalle_conv *cv = &d->blocks[g][b].conv[c];
                size_t n = (size_t)cv->n_in * cv->k * cv->k * side * side;
                if (n > most)
                    most = n;
            }
    return most;
}

/* The im2col matrix's floats (d->col_cap) for d's batch: a chunk of images
 * within the budget (CAE_DALLE_COL_FLOATS, else COL_BUDGET), at least one
 * image, and within one allocation of max_alloc bytes where an image fits. */
static int plan_col(cae_dalle *d, cl_ulong max_alloc)
{
    size_t per_image = col_per_image(d), budget = COL_BUDGET;
    const char *env = getenv("CAE_DALLE_COL_FLOATS");

    if (env != NULL && *env != '\0') {
        char *end;
        unsigned long long v;
        errno = 0;
        v = strtoull(env, &end, 10);
        if (errno != 0 || *end != '\0' || env[0] == '-') {
            cae_errorf("CAE_DALLE_COL_FLOATS=%s: not a count of floats", env);
            return -1;
        }
        budget = (size_t)v;
    }
    d->col_cap = d->batch * per_image < budget ? d->batch * per_image : budget;
    if (d->col_cap < per_image)
        d->col_cap = per_image;
    if (d->col_cap * sizeof(float) > max_alloc && per_image * sizeof(float) <= max_alloc)
        d->col_cap = max_alloc / sizeof(float) / per_image * per_image;
    return 0;
}

/* Size the buffers for (batch, image_size) and allocate them. */
static int plan_memory(cae_dalle *d)
{
    cae_ctx *ctx = d->ctx;
    size_t B = d->batch, S2 = (size_t)d->image_size * d->image_size;
    size_t act, pool, hid, logits, need;

    /* The widest activation is group 1 at full resolution; widths double
     * as the area quarters, so later groups need less. */
    act = (size_t)d->n_hid * B * S2;
    pool = act / 4;
    hid = act / 4;
    logits = B * (size_t)d->vocab * (size_t)d->grid * (size_t)d->grid;
    CAE_TRY(plan_col(d, ctx->max_alloc));

    need = (act + pool + 2 * hid + d->col_cap + logits) * sizeof(float);
    if (need > ctx->global_mem) {
        cae_errorf("DALL-E tokenizer: batch %zu at %dx%d needs %zu MiB of device memory, the "
                   "device (%s) has %llu MiB", B, d->image_size, d->image_size, need >> 20,
                   ctx->device_name, (unsigned long long)(ctx->global_mem >> 20));
        return -1;
    }
    CAE_TRY(cae_alloc(ctx, act * sizeof(float), &d->act));
    CAE_TRY(cae_alloc(ctx, pool * sizeof(float), &d->pool));
    CAE_TRY(cae_alloc(ctx, hid * sizeof(float), &d->hid[0]));
    CAE_TRY(cae_alloc(ctx, hid * sizeof(float), &d->hid[1]));
    CAE_TRY(cae_alloc(ctx, d->col_cap * sizeof(float), &d->col));
    CAE_TRY(cae_alloc(ctx, logits * sizeof(float), &d->logits));
    return 0;
}

/* Kernel shapes: CPU (one contiguous run per work-item) or GPU (one
 * element per work-item), as the device's defaults say (ctx->cpu_defaults);
 * CAE_DALLE_KERNELS=cpu|gpu overrides them. */
static int get_kernels(cae_dalle *d)
{
    const char *env = getenv("CAE_DALLE_KERNELS");
    d->cpu_shapes = d->ctx->cpu_defaults;
    if (env != NULL && *env != '\0') {
        if (strcmp(env, "cpu") != 0 && strcmp(env, "gpu") != 0) {
            cae_errorf("CAE_DALLE_KERNELS=%s: expected cpu or gpu", env);
            return -1;
        }
        d->cpu_shapes = strcmp(env, "cpu") == 0;
    }
    d->im2col_id = d->cpu_shapes ? CAE_K_conv_im2col_rows : CAE_K_conv_im2col;
    d->k_im2col = d->ctx->kernel[d->im2col_id];
    d->k_bias = d->ctx->kernel[CAE_K_conv_bias_act];
    d->k_pool = d->ctx->kernel[CAE_K_conv_maxpool2];
    d->k_argmax = d->ctx->kernel[CAE_K_conv_argmax_gather];
    return 0;
}

/* The file at path (its header alone with header_only) into *f and a new
 * tokenizer for batch images of image_size, its n_hid and vocabulary read
 * and every convolution planned; NULL reported, with f freed. */
static cae_dalle *open_plan(cae_st_file *f, const char *path, size_t batch, int image_size,
                            int header_only)
{
    cae_dalle *d;
    if (batch == 0 || batch > (1u << 20) || image_size < 8 || image_size % 8 != 0 ||
        image_size > (1 << 14)) {
        cae_errorf("%s: DALL-E tokenizer needs a batch of at least 1 and an image size that is a "
                   "positive multiple of 8 (got batch %zu, size %d)", path, batch, image_size);
        return NULL;
    }
    if ((header_only ? cae_st_read_header(f, path) : cae_st_read(f, path)) != 0)
        return NULL;
    d = calloc(1, sizeof *d);
    if (d == NULL)
        cae_errorf("%s: out of host memory", path);
    if (d == NULL || read_sizes(d, f) != 0) {
        free(d);
        cae_st_free(f);
        return NULL;
    }
    d->batch = batch;
    d->image_size = image_size;
    d->grid = image_size / 8;
    plan_layers(d);
    return d;
}

int cae_dalle_load(cae_dalle **out, cae_ctx *ctx, const char *path, size_t batch, int image_size)
{
    cae_st_file f;
    cae_dalle *d;
    int rc = 0;

    *out = NULL;
    d = open_plan(&f, path, batch, image_size, 0);
    if (d == NULL)
        return -1;
    d->ctx = ctx;
    CAE_TRY_GOTO(load_weights(d, &f), done);
    CAE_TRY_GOTO(plan_memory(d), done);
    CAE_TRY_GOTO(get_kernels(d), done);
done:
    cae_st_free(&f);
    if (rc != 0) {
        cae_dalle_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

void cae_dalle_free(cae_dalle *d)
{
    if (d == NULL)
        return;
    cae_release(&d->weights);
    cae_release(&d->act);
    cae_release(&d->pool);
    cae_release(&d->hid[0]);
    cae_release(&d->hid[1]);
    cae_release(&d->col);
    cae_release(&d->logits);
    free(d);
}

int cae_dalle_vocab(const cae_dalle *d)
{
    return d->vocab;
}

int cae_dalle_grid(const cae_dalle *d)
{
    return d->grid;
}

cae_buf cae_dalle_logits(const cae_dalle *d)
{
    return (cae_buf){d->logits, 0};
}

/* ------------------------------------------------------------ GEMM shapes */

/* A k x k convolution's GEMMs over d's batch at hw pixels per image: one per
 * chunk of images that fits the im2col matrix, as conv_kxk runs them. */
static void kxk_gemms(const cae_dalle *d, const dalle_conv *cv, size_t hw, cae_dalle_gemm_fn fn,
                      void *user)
{
    size_t rows = (size_t)cv->n_in * cv->k * cv->k, chunk = d->col_cap / (rows * hw);
    if (chunk > d->batch)
        chunk = d->batch;
    fn(user, (size_t)cv->n_out, chunk * hw, rows, d->batch / chunk);
    if (d->batch % chunk)
        fn(user, (size_t)cv->n_out, d->batch % chunk * hw, rows, 1);
}

int cae_dalle_gemms(const char *path, size_t batch, int image_size, cl_ulong max_alloc,
                    cae_dalle_gemm_fn fn, void *user)
{
    cae_st_file f;
    cae_dalle *d = open_plan(&f, path, batch, image_size, 1);
    size_t side = (size_t)image_size;
    int rc = 0;

    if (d == NULL)
        return -1;
    CAE_TRY_GOTO(plan_col(d, max_alloc), done);
    kxk_gemms(d, &d->input, side * side, fn, user);
    for (int g = 0; g < N_GROUPS; g++) {
        for (int b = 0; b < N_BLOCKS; b++) {
            const dalle_block *blk = &d->blocks[g][b];
            size_t cols = batch * side * side;
            for (int c = 0; c < 3; c++)
                kxk_gemms(d, &blk->conv[c], side * side, fn, user);
            if (blk->has_id)
                fn(user, (size_t)blk->n_out, cols, (size_t)blk->n_in, 1);
            fn(user, (size_t)blk->n_out, cols, (size_t)blk->conv[3].n_in, 1);
        }
        if (g < N_GROUPS - 1)
            side /= 2; /* the max-pool after groups 1-3 */
    }
    fn(user, (size_t)d->vocab, side * side, (size_t)d->output.n_in, batch);
done:
    cae_st_free(&f);
    free(d);
    return rc;
}

/* ------------------------------------------------------------ forward */

/* 2-D launch of kernel id (its arguments set) with work-groups of up to 64
 * along dimension 0. */
static int launch_2d(cae_ctx *ctx, cae_kernel_id id, size_t n0, size_t n1)
{
    size_t wg = ctx->kernel_wg[id], global[2] = {n0, n1}, local[2] = {1, 1};
    if (n0 == 0 || n1 == 0)
        return 0;
    local[0] = wg < 64 ? (wg ? wg : 1) : 64;
    return cae_launch(ctx, ctx->kernel[id], 2, global, local);
}

static cae_buf wbuf(const cae_dalle *d, size_t off)
{
    return (cae_buf){d->weights, off};
}

/* Columns per work-item of the element-wise kernels (see cl/conv.cl). */
#define CPU_SEG 512

/* y[R rows, P columns] = act(y + b[r % nb]); no bias when b_off is SIZE_MAX */
static int bias_act(cae_dalle *d, cae_buf y, size_t b_off, size_t P, size_t R, size_t nb, int relu)
{
    cl_uint a = 0;
    int has_bias = b_off != SIZE_MAX, seg = d->cpu_shapes ? CPU_SEG : 1;
    CAE_TRY(cae_arg_buf(d->k_bias, &a, y));
    CAE_TRY(cae_arg_buf(d->k_bias, &a, wbuf(d, has_bias ? b_off : 0)));
    CAE_TRY(cae_arg_ulong(d->k_bias, &a, P));
    CAE_TRY(cae_arg_int(d->k_bias, &a, (int)R));
    CAE_TRY(cae_arg_int(d->k_bias, &a, (int)nb));
    CAE_TRY(cae_arg_int(d->k_bias, &a, has_bias));
    CAE_TRY(cae_arg_int(d->k_bias, &a, relu));
    CAE_TRY(cae_arg_int(d->k_bias, &a, seg));
    return cae_launch_id_1d(d->ctx, CAE_K_conv_bias_act, (P + (size_t)seg - 1) / (size_t)seg * R);
}

/* out [n_out, B*H*W] (CNHW) = W * im2col(act(x)) for a k x k conv, no bias.
 * Image b's channel c of x starts at b*img_stride + c*ch_stride. */
static int conv_kxk(cae_dalle *d, int section, const dalle_conv *cv, cae_buf out, cae_buf x,
                    size_t img_stride, size_t ch_stride, int H, int W, int relu)
{
    size_t B = d->batch, hw = (size_t)H * W, rows = (size_t)cv->n_in * cv->k * cv->k;
    size_t chunk = d->col_cap / (rows * hw);
    cae_buf col = {d->col, 0};
    if (chunk > B)
        chunk = B;
    for (size_t b0 = 0; b0 < B; b0 += chunk) {
        size_t nb = B - b0 < chunk ? B - b0 : chunk;
        cl_uint a = 0;
        CAE_TRY(cae_arg_buf(d->k_im2col, &a, col));
        CAE_TRY(cae_arg_buf(d->k_im2col, &a, cae_buf_at(x, b0 * img_stride)));
        CAE_TRY(cae_arg_int(d->k_im2col, &a, cv->n_in));
        CAE_TRY(cae_arg_int(d->k_im2col, &a, H));
        CAE_TRY(cae_arg_int(d->k_im2col, &a, W));
        CAE_TRY(cae_arg_int(d->k_im2col, &a, cv->k));
        CAE_TRY(cae_arg_ulong(d->k_im2col, &a, img_stride));
        CAE_TRY(cae_arg_ulong(d->k_im2col, &a, ch_stride));
        CAE_TRY(cae_arg_int(d->k_im2col, &a, (int)nb));
        CAE_TRY(cae_arg_int(d->k_im2col, &a, relu));
        if (d->cpu_shapes)
            CAE_TRY(launch_2d(d->ctx, d->im2col_id, nb * (size_t)H, (size_t)cv->n_in * cv->k * cv->k));
        else
            CAE_TRY(launch_2d(d->ctx, d->im2col_id, nb * hw, (size_t)cv->n_in));
        CAE_TRY(mark(d, section, CAT_IM2COL));
        /* out[:, b0*hw ...] = W [n_out, rows] * col [rows, nb*hw] */
        CAE_TRY(cae_gemm(d->ctx, 0, 0, (size_t)cv->n_out, nb * hw, rows, 1.0f,
                         wbuf(d, cv->w_off), rows, col, nb * hw, 0.0f,
                         cae_buf_at(out, b0 * hw), B * hw));
        CAE_TRY(mark(d, section, CAT_GEMM));
    }
    return 0;
}

/* A k x k conv on CNHW activations, with its bias and a ReLU after it. */
static int conv_relu(cae_dalle *d, int section, const dalle_conv *cv, cae_buf out, cae_buf x,
                     int H, int W, int relu_in)
{
    size_t cols = d->batch * (size_t)H * W;
    CAE_TRY(conv_kxk(d, section, cv, out, x, (size_t)H * W, cols, H, W, relu_in));
    CAE_TRY(bias_act(d, out, cv->b_off, cols, (size_t)cv->n_out, (size_t)cv->n_out, 1));
    return mark(d, section, CAT_OTHER);
}

/* out = id_path(x) + 1/64 * res_path(x) on CNHW activations at H x W.
 * out may be x itself when the block has no id_path. */
static int block_forward(cae_dalle *d, int section, const dalle_block *blk, cae_buf out,
                         cae_buf x, int H, int W, int last)
{
    size_t cols = d->batch * (size_t)H * W;
    const float gain = 1.0f / (float)(N_LAYERS * N_LAYERS);
    cae_buf h0 = {d->hid[0], 0}, h1 = {d->hid[1], 0};

    CAE_TRY(conv_relu(d, section, &blk->conv[0], h0, x, H, W, 1));
    CAE_TRY(conv_relu(d, section, &blk->conv[1], h1, h0, H, W, 0));
    CAE_TRY(conv_relu(d, section, &blk->conv[2], h0, h1, H, W, 0));
    if (blk->has_id) {
        if (out.mem == x.mem) {
            cae_errorf("DALL-E tokenizer: internal error: id_path in place");
            return -1;
        }
        CAE_TRY(cae_gemm(d->ctx, 0, 0, (size_t)blk->n_out, cols, (size_t)blk->n_in, 1.0f,
                         wbuf(d, blk->id.w_off), (size_t)blk->n_in, x, cols, 0.0f, out, cols));
    } else if (out.mem != x.mem || out.off != x.off) {
        CAE_TRY(cae_copy(d->ctx, out, x, (size_t)blk->n_out * cols));
    }
    /* out += post_gain * conv_4(h), then the combined bias (and the output
     * ReLU after the last block) */
    CAE_TRY(cae_gemm(d->ctx, 0, 0, (size_t)blk->n_out, cols, (size_t)blk->conv[3].n_in, gain,
                     wbuf(d, blk->conv[3].w_off), (size_t)blk->conv[3].n_in, h0, cols, 1.0f, out,
                     cols));
    CAE_TRY(mark(d, section, CAT_GEMM));
    CAE_TRY(bias_act(d, out, blk->bias_off, cols, (size_t)blk->n_out, (size_t)blk->n_out, last));
    return mark(d, section, CAT_OTHER);
}

static int maxpool(cae_dalle *d, cae_buf y, cae_buf x, size_t planes, int H, int W)
{
    cl_uint a = 0;
    int seg = d->cpu_shapes ? W / 2 : 1;
    CAE_TRY(cae_arg_buf(d->k_pool, &a, y));
    CAE_TRY(cae_arg_buf(d->k_pool, &a, x));
    CAE_TRY(cae_arg_ulong(d->k_pool, &a, planes));
    CAE_TRY(cae_arg_int(d->k_pool, &a, H));
    CAE_TRY(cae_arg_int(d->k_pool, &a, W));
    CAE_TRY(cae_arg_int(d->k_pool, &a, seg));
    return cae_launch_id_1d(d->ctx, CAE_K_conv_maxpool2, planes * (size_t)(H / 2) * (size_t)(W / 2 / seg));
}

/* The logits [B, vocab, G, G] from the view [B, 3, S, S]. */
static int forward(cae_dalle *d, cae_buf view)
{
    cae_ctx *ctx = d->ctx;
    size_t B = d->batch, S = (size_t)d->image_size, cells;
    cae_buf act = {d->act, 0}, pool = {d->pool, 0}, logits = {d->logits, 0};
    int side = d->image_size;

    d->last = now();
    CAE_TRY(conv_kxk(d, 0, &d->input, act, view, 3 * S * S, S * S, side, side, 0));
    CAE_TRY(bias_act(d, act, d->input.b_off, B * S * S, (size_t)d->n_hid, (size_t)d->n_hid, 0));
    CAE_TRY(mark(d, 0, CAT_OTHER));
    for (int g = 0; g < N_GROUPS; g++) {
        for (int b = 0; b < N_BLOCKS; b++) {
            cae_buf x = (g > 0 && b == 0) ? pool : act;
            int last = g == N_GROUPS - 1 && b == N_BLOCKS - 1;
            CAE_TRY(block_forward(d, g + 1, &d->blocks[g][b], act, x, side, side, last));
        }
        if (g < N_GROUPS - 1) {
            CAE_TRY(maxpool(d, pool, act, (size_t)d->blocks[g][N_BLOCKS - 1].n_out * B, side, side));
            CAE_TRY(mark(d, g + 1, CAT_OTHER));
            side /= 2;
        }
    }
    /* output conv per image: logits[b] [V, cells] = W [V, C] * act[:, b] */
    cells = (size_t)side * side;
    for (size_t b = 0; b < B; b++)
        CAE_TRY(cae_gemm(ctx, 0, 0, (size_t)d->vocab, cells, (size_t)d->output.n_in, 1.0f,
                         wbuf(d, d->output.w_off), (size_t)d->output.n_in, cae_buf_at(act, b * cells),
                         B * cells, 0.0f, cae_buf_at(logits, b * d->vocab * cells), cells));
    CAE_TRY(mark(d, N_SECTIONS - 1, CAT_GEMM));
    CAE_TRY(bias_act(d, logits, d->output.b_off, cells, B * d->vocab, (size_t)d->vocab, 0));
    return mark(d, N_SECTIONS - 1, CAT_OTHER);
}

/* The buffer must hold n 4-byte elements after its offset. */
static int check_buf(cae_buf b, size_t n, const char *what)
{
    size_t bytes = 0;
    if (b.mem == NULL) {
        cae_errorf("DALL-E tokenizer: no %s buffer", what);
        return -1;
    }
    CL_CHECK(clGetMemObjectInfo(b.mem, CL_MEM_SIZE, sizeof bytes, &bytes, NULL));
    if (bytes / 4 < b.off || bytes / 4 - b.off < n) {
        cae_errorf("DALL-E tokenizer: the %s buffer holds %zu elements after offset %zu, %zu needed",
                   what, bytes / 4 > b.off ? bytes / 4 - b.off : 0, b.off, n);
        return -1;
    }
    return 0;
}

int cae_dalle_labels(cae_dalle *d, cae_buf labels, cae_buf view, cae_buf mask_idx, size_t M)
{
    cl_uint a = 0;
    size_t n = d->batch * M, S = (size_t)d->image_size;
    if (M > (size_t)1 << 24) {
        cae_errorf("DALL-E tokenizer: %zu masked patches per image is too many", M);
        return -1;
    }
    CAE_TRY(check_buf(view, d->batch * 3 * S * S, "view"));
    if (n > 0) {
        CAE_TRY(check_buf(mask_idx, n, "mask_idx"));
        CAE_TRY(check_buf(labels, n, "labels"));
    }
    CAE_TRY(forward(d, view));
    if (n > 0) {
        CAE_TRY(cae_arg_buf(d->k_argmax, &a, labels));
        CAE_TRY(cae_arg_buf(d->k_argmax, &a, (cae_buf){d->logits, 0}));
        CAE_TRY(cae_arg_buf(d->k_argmax, &a, mask_idx));
        CAE_TRY(cae_arg_int(d->k_argmax, &a, (int)d->batch));
        CAE_TRY(cae_arg_int(d->k_argmax, &a, (int)M));
        CAE_TRY(cae_arg_int(d->k_argmax, &a, d->vocab));
        CAE_TRY(cae_arg_int(d->k_argmax, &a, d->grid * d->grid));
        CAE_TRY(cae_launch_id_1d(d->ctx, CAE_K_conv_argmax_gather, n));
    }
    CAE_TRY(mark(d, N_SECTIONS - 1, CAT_OTHER));
    d->calls++;
    return 0;
}

/* gemm.c: cae_gemm on CLBlast or on the host CBLAS inside the queue.
 *
 * The host path enqueues cblas_sgemm as an OpenCL native kernel: the driver
 * hands it host pointers to the buffers when the queue reaches it, so it is
 * ordered with the surrounding kernels like any other command.
 */
#include "runtime/gemm.h"

#include "runtime/launch.h"
#include "runtime/memory.h"

#include <cblas.h>
#include <pthread.h>
#include <clblast_c.h>
#include <stdlib.h>
#include <string.h>

#define CLBLAST_CHECK(call)                                                   \
    do {                                                                      \
        CLBlastStatusCode st_ = (call);                                       \
        if (st_ != CLBlastSuccess) {                                          \
            cae_errorf("%s failed: %s (%d) at %s:%d", #call,                  \
                       cae_clblast_error_name(st_), (int)st_, __FILE__,       \
                       __LINE__);                                             \
            return -1;                                                        \
        }                                                                     \
    } while (0)

/* A context's GEMM state (ctx->gemm) */
struct cae_gemm {
    cae_gemm_choice choice; /* resolved: CAE_GEMM_CLBLAST or CAE_GEMM_HOST */
    cl_mem temp;            /* CLBlast temporary buffer, grown on demand */
    size_t temp_bytes;
};

int cae_gemm_choice_parse(const char *text, cae_gemm_choice *out)
{
    if (strcmp(text, "auto") == 0)
        *out = CAE_GEMM_AUTO;
    else if (strcmp(text, "clblast") == 0)
        *out = CAE_GEMM_CLBLAST;
    else if (strcmp(text, "host") == 0)
        *out = CAE_GEMM_HOST;
    else
        return -1;
    return 0;
}

cae_gemm_choice cae_gemm_backend(const cae_ctx *ctx)
{
    return ctx->gemm ? ctx->gemm->choice : CAE_GEMM_AUTO;
}

/* The native kernel's argument block: host pointers to A, B and C (with
 * their offsets applied) and the GEMM's shape. */
typedef struct {
    const float *a, *b;
    float *c;
    size_t m, n, k, lda, ldb, ldc;
    size_t stride_a, stride_b, stride_c, batch;
    /* an outer batch around the inner one (1 when flat) */
    size_t outer_a, outer_b, outer_c, outer;
    float alpha, beta;
    int trans_a, trans_b;
} host_gemm_args;

/* OpenBLAS's thread count for big products; small ones run on one thread,
 * where waking the pool costs more than it saves (measured: the Fashion-MNIST
 * default step is 20% faster). */
static int host_threads = 1, host_threads_limit = 0;
#define HOST_GEMM_THREADED_MACS ((size_t)1 << 22)

/* GEMMs [first, last) of the grid, in grid order (outer, then inner) */
static void host_gemm_range(const host_gemm_args *g, size_t first, size_t last)
{
    for (size_t idx = first; idx < last; idx++) {
        const size_t o = idx / g->batch, i = idx - o * g->batch;
        cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                    g->trans_b ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k,
                    g->alpha, g->a + o * g->outer_a + i * g->stride_a, (int)g->lda,
                    g->b + o * g->outer_b + i * g->stride_b, (int)g->ldb, g->beta,
                    g->c + o * g->outer_c + i * g->stride_c, (int)g->ldc);
    }
}

typedef struct {
    const host_gemm_args *g;
    size_t first, last;
} host_gemm_slice;

static void *host_gemm_slice_main(void *p)
{
    const host_gemm_slice *s = p;
    host_gemm_range(s->g, s->first, s->last);
    return NULL;
}

#define HOST_GEMM_MAX_THREADS 64

/* A big product runs on OpenBLAS's threads. A grid of small ones (the
 * attention's per-(sample, head) products) would leave all but one core
 * idle, so it is split across threads of our own, each running whole
 * single-threaded products: every product is still computed by one thread
 * in one order, so results do not depend on the split. */
static void host_gemm_run(void *p)
{
    const host_gemm_args *g = p;
    const size_t total = g->outer * g->batch;
    size_t nt = (size_t)host_threads;
    if (g->m * g->n * g->k >= HOST_GEMM_THREADED_MACS) {
        openblas_set_num_threads(host_threads);
        host_gemm_range(g, 0, total);
        return;
    }
    openblas_set_num_threads(1);
    if (nt > HOST_GEMM_MAX_THREADS)
        nt = HOST_GEMM_MAX_THREADS;
    if (nt > total)
        nt = total;
    if (nt < 2) {
        host_gemm_range(g, 0, total);
        return;
    }
    pthread_t th[HOST_GEMM_MAX_THREADS];
    host_gemm_slice sl[HOST_GEMM_MAX_THREADS];
    int started[HOST_GEMM_MAX_THREADS] = {0};
    for (size_t t = 0; t < nt; t++) {
        sl[t].g = g;
        sl[t].first = total * t / nt;
        sl[t].last = total * (t + 1) / nt;
    }
    for (size_t t = 1; t < nt; t++) /* a thread that cannot start runs inline below */
        started[t] = pthread_create(&th[t], NULL, host_gemm_slice_main, &sl[t]) == 0;
    host_gemm_range(g, sl[0].first, sl[0].last);
    for (size_t t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            host_gemm_range(g, sl[t].first, sl[t].last);
    }
}

/* Why maps and not the native kernel's own memory-object list: the
 * driver may reorder and merge that list (PoCL 3.1 sorts it by an internal
 * id), so pointers can arrive swapped. Instead each distinct buffer is
 * mapped once, without waiting: the in-order queue completes the map before
 * the native kernel runs and unmaps after it, and on a CPU device a map is
 * only a pointer. */
static int host_gemm(cae_ctx *ctx, host_gemm_args *g, cae_buf a, cae_buf b, cae_buf c)
{
    cl_mem mems[3] = {a.mem, b.mem, c.mem};
    float *base[3] = {NULL, NULL, NULL};
    int owner[3];
    cl_int err;
    cl_event ev = NULL;
    int rc = 0;

    for (int i = 0; i < 3; i++) {
        owner[i] = i;
        for (int j = 0; j < i; j++)
            if (mems[j] == mems[i]) {
                owner[i] = owner[j];
                break;
            }
    }
    for (int i = 0; i < 3; i++) {
        size_t size = 0;
        if (owner[i] != i)
            continue;
        CL_CHECK(clGetMemObjectInfo(mems[i], CL_MEM_SIZE, sizeof size, &size, NULL));
        base[i] = clEnqueueMapBuffer(ctx->queue, mems[i], CL_FALSE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                     size, 0, NULL, NULL, &err);
        if (err != CL_SUCCESS) {
            cae_cl_error("clEnqueueMapBuffer", err, __FILE__, __LINE__);
            rc = -1;
            goto unmap;
        }
    }
    g->a = base[owner[0]] + a.off;
    g->b = base[owner[1]] + b.off;
    g->c = base[owner[2]] + c.off;
    err = clEnqueueNativeKernel(ctx->queue, host_gemm_run, g, sizeof *g, 0, NULL, NULL, 0, NULL,
                                ctx->profiling ? &ev : NULL);
    if (err != CL_SUCCESS) {
        cae_cl_error("clEnqueueNativeKernel(cblas_sgemm)", err, __FILE__, __LINE__);
        rc = -1;
    } else if (ev && cae_prof_record(ctx, ev, "native") != 0) {
        rc = -1;
    }
    ctx->launches++;
unmap:
    for (int i = 0; i < 3; i++) {
        if (owner[i] != i || !base[i])
            continue;
        err = clEnqueueUnmapMemObject(ctx->queue, mems[i], base[i], 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            cae_cl_error("clEnqueueUnmapMemObject", err, __FILE__, __LINE__);
            rc = -1;
        }
    }
    return rc;
}

/* int overflow guard for CBLAS's int dimensions */
static int fits_int(size_t x)
{
    return x <= 0x7fffffff;
}

static int check_dims(size_t m, size_t n, size_t k, size_t lda, size_t ldb, size_t ldc)
{
    if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc)) {
        cae_errorf("GEMM dimensions too large (m=%zu n=%zu k=%zu)", m, n, k);
        return -1;
    }
    return 0;
}

static CLBlastTranspose tr(int t)
{
    return t ? CLBlastTransposeYes : CLBlastTransposeNo;
}

static int clblast_temp(cae_ctx *ctx, int ta, int tb, size_t m, size_t n, size_t k, size_t lda,
                        size_t ldb, size_t ldc, cae_buf a, cae_buf b, cae_buf c)
{
    size_t need = 0;
    CLBLAST_CHECK(CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, tr(ta), tr(tb), m, n, k,
                                             a.off, lda, b.off, ldb, c.off, ldc, &ctx->queue, &need));
    if (need > ctx->gemm->temp_bytes) {
        cae_release(&ctx->gemm->temp);
        ctx->gemm->temp_bytes = 0;
        CAE_TRY(cae_alloc(ctx, need, &ctx->gemm->temp));
        ctx->gemm->temp_bytes = need;
    }
    return 0;
}

int cae_gemm(cae_ctx *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
             cae_buf a, size_t lda, cae_buf b, size_t ldb, float beta, cae_buf c, size_t ldc)
{
    cl_event ev = NULL;
    if (m == 0 || n == 0)
        return 0;
    CAE_TRY(check_dims(m, n, k, lda, ldb, ldc));
    if (ctx->gemm->choice == CAE_GEMM_HOST) {
        host_gemm_args g = {0};
        g.m = m, g.n = n, g.k = k, g.lda = lda, g.ldb = ldb, g.ldc = ldc;
        g.alpha = alpha, g.beta = beta, g.trans_a = trans_a, g.trans_b = trans_b, g.batch = 1;
        g.outer = 1;
        return host_gemm(ctx, &g, a, b, c);
    }
    CAE_TRY(clblast_temp(ctx, trans_a, trans_b, m, n, k, lda, ldb, ldc, a, b, c));
    /* with profiling, CLBlast's event (its last kernel) is kept */
    if (ctx->gemm->temp)
        CLBLAST_CHECK(CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, tr(trans_a), tr(trans_b), m, n,
                                                 k, alpha, a.mem, a.off, lda, b.mem, b.off, ldb, beta,
                                                 c.mem, c.off, ldc, &ctx->queue,
                                                 ctx->profiling ? &ev : NULL, ctx->gemm->temp));
    else /* this shape needs no temporary buffer */
        CLBLAST_CHECK(CLBlastSgemm(CLBlastLayoutRowMajor, tr(trans_a), tr(trans_b), m, n, k, alpha,
                                   a.mem, a.off, lda, b.mem, b.off, ldb, beta, c.mem, c.off, ldc,
                                   &ctx->queue, ctx->profiling ? &ev : NULL));
    ctx->launches++;
    return ev ? cae_prof_record(ctx, ev, "gemm") : 0;
}

int cae_gemm_batched(cae_ctx *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                     float alpha, cae_buf a, size_t lda, size_t stride_a, cae_buf b, size_t ldb,
                     size_t stride_b, float beta, cae_buf c, size_t ldc, size_t stride_c,
                     size_t batch)
{
    cl_event ev = NULL;
    if (m == 0 || n == 0 || batch == 0)
        return 0;
    CAE_TRY(check_dims(m, n, k, lda, ldb, ldc));
    if (ctx->gemm->choice == CAE_GEMM_HOST) {
        host_gemm_args g = {0};
        g.m = m, g.n = n, g.k = k, g.lda = lda, g.ldb = ldb, g.ldc = ldc;
        g.stride_a = stride_a, g.stride_b = stride_b, g.stride_c = stride_c, g.batch = batch;
        g.alpha = alpha, g.beta = beta, g.trans_a = trans_a, g.trans_b = trans_b;
        g.outer = 1;
        return host_gemm(ctx, &g, a, b, c);
    }
    CLBLAST_CHECK(CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, tr(trans_a), tr(trans_b), m, n, k,
                                             alpha, a.mem, a.off, lda, stride_a, b.mem, b.off, ldb,
                                             stride_b, beta, c.mem, c.off, ldc, stride_c, batch,
                                             &ctx->queue, ctx->profiling ? &ev : NULL));
    ctx->launches++;
    return ev ? cae_prof_record(ctx, ev, "gemm_batched") : 0;
}

int cae_gemm_batched_2d(cae_ctx *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                        float alpha, cae_buf a, size_t lda, cae_buf b, size_t ldb, float beta,
                        cae_buf c, size_t ldc, cae_gemm_batch outer, cae_gemm_batch inner)
{
    if (m == 0 || n == 0 || outer.count == 0 || inner.count == 0)
        return 0;
    CAE_TRY(check_dims(m, n, k, lda, ldb, ldc));
    if (ctx->gemm->choice == CAE_GEMM_HOST) {
        host_gemm_args g = {0};
        g.m = m, g.n = n, g.k = k, g.lda = lda, g.ldb = ldb, g.ldc = ldc;
        g.stride_a = inner.stride_a, g.stride_b = inner.stride_b, g.stride_c = inner.stride_c;
        g.batch = inner.count;
        g.outer_a = outer.stride_a, g.outer_b = outer.stride_b, g.outer_c = outer.stride_c;
        g.outer = outer.count;
        g.alpha = alpha, g.beta = beta, g.trans_a = trans_a, g.trans_b = trans_b;
        return host_gemm(ctx, &g, a, b, c); /* one native kernel for the whole grid */
    }
    /* CLBlast batches with one stride: loop over the shorter dimension and
     * batch the longer one (fewest launches) */
    if (outer.count > inner.count) {
        cae_gemm_batch t = outer;
        outer = inner;
        inner = t;
    }
    for (size_t o = 0; o < outer.count; o++)
        CAE_TRY(cae_gemm_batched(ctx, trans_a, trans_b, m, n, k, alpha,
                                 cae_buf_at(a, o * outer.stride_a), lda, inner.stride_a,
                                 cae_buf_at(b, o * outer.stride_b), ldb, inner.stride_b, beta,
                                 cae_buf_at(c, o * outer.stride_c), ldc, inner.stride_c,
                                 inner.count));
    return 0;
}

/* CLBlast's database does not know PoCL's CPU vendor string and falls back
 * to GPU parameters that run at a tenth of the host BLAS; this set was
 * measured on a Zen 4 CPU under PoCL (see the speed issue). Used on CPU
 * devices without a tuning file. Order: cae_tune_xgemm_names. */
const size_t cae_gemm_cpu_xgemm[CAE_TUNE_XGEMM_N] = {0, 1, 16, 1, 8, 8, 128, 4,
                                                     4, 64, 0, 0, 0, 0, 16, 4};

int cae_gemm_override(cl_device_id device, const char *kernel, const char *const *names,
                      const size_t *values, size_t n)
{
    CLBlastStatusCode st = CLBlastOverrideParameters(device, kernel, CLBlastPrecisionSingle, n,
                                                     (const char **)names, values);
    if (st != CLBlastSuccess) {
        cae_errorf("CLBlastOverrideParameters(%s) failed: %s", kernel, cae_clblast_error_name(st));
        return -1;
    }
    return 0;
}

/* The tuning file's CLBlast parameters, else the CPU set above (and all but
 * tiny products on the indirect kernel) where the CPU defaults apply; on
 * another device (a GPU, or any under CAE_CL_NATIVE_KERNELS=0) without a
 * tuning file, CLBlast's database decides, and for a device it does not
 * know that means generic parameters: say so. */
static void tune_clblast(cae_ctx *ctx)
{
    static const char *const routine[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
    const cae_tune *t = &ctx->tune;
    int failed = 0;
    if (t->have_xgemm)
        failed |= cae_gemm_override(ctx->device, "Xgemm", cae_tune_xgemm_names, t->xgemm,
                                    CAE_TUNE_XGEMM_N);
    else if (ctx->cpu_defaults)
        failed |= cae_gemm_override(ctx->device, "Xgemm", cae_tune_xgemm_names, cae_gemm_cpu_xgemm,
                                    CAE_TUNE_XGEMM_N);
    if (t->have_direct)
        failed |= cae_gemm_override(ctx->device, "XgemmDirect", cae_tune_direct_names, t->direct,
                                    CAE_TUNE_DIRECT_N);
    if (t->have_min_indirect) {
        failed |= cae_gemm_override(ctx->device, "GemmRoutine", routine, &t->min_indirect, 1);
    } else if (ctx->cpu_defaults) {
        /* products of 64^3 multiply-adds and up on the indirect kernel:
         * CLBlast's default threshold sends most step shapes (attention's
         * included) to XgemmDirect with generic parameters (cae-cl-tune on
         * PoCL, cae_small: every product indirect gave 2.4x the step's
         * images/s); tiny ones stay direct, without padded copies */
        static const size_t min_indirect = 64;
        failed |= cae_gemm_override(ctx->device, "GemmRoutine", routine, &min_indirect, 1);
    }
    if (failed)
        cae_errorf("warning: CLBlast keeps some of its own parameters on %s", ctx->device_name);
    if (!ctx->cpu_defaults && !t->have_xgemm) {
        static int said;
        cae_tune_device dev;
        char path[4096] = "(no cache folder)";
        if (said++)
            return;
        if (cae_tune_device_query(ctx->device, ctx->platform, &dev) == 0)
            cae_tune_path(&dev, path, sizeof path);
        cae_errorf("warning: no tuned GEMM parameters for %s (%s); CLBlast uses its built-in "
                   "ones, generic for a device its database does not know: run cae-cl-tune",
                   ctx->device_name, path);
    }
}

cae_gemm_choice cae_gemm_resolve(const cae_ctx *ctx, cae_gemm_choice choice)
{
    if (choice != CAE_GEMM_AUTO)
        return choice;
    return (ctx->cpu_defaults && ctx->native_kernels) ? CAE_GEMM_HOST : CAE_GEMM_CLBLAST;
}

/* The back end choice, its parameters applied when tuned is set (the tuning
 * file's or the defaults, tune_clblast), else CLBlast's own. */
static int init_backend(cae_ctx *ctx, cae_gemm_choice choice, int tuned)
{
    choice = cae_gemm_resolve(ctx, choice);
    if (choice == CAE_GEMM_HOST && !ctx->native_kernels) {
        cae_errorf("--gemm host: device %s cannot run native kernels; use --gemm clblast",
                   ctx->device_name);
        return -1;
    }
    if (!ctx->gemm && !(ctx->gemm = calloc(1, sizeof *ctx->gemm))) {
        cae_errorf("out of host memory");
        return -1;
    }
    ctx->gemm->choice = choice;
    if (choice == CAE_GEMM_HOST) {
        host_threads = openblas_get_num_threads();
        if (host_threads_limit > 0 && host_threads > host_threads_limit)
            host_threads = host_threads_limit;
    }
    if (choice == CAE_GEMM_CLBLAST && tuned)
        tune_clblast(ctx);
    return 0;
}

int cae_gemm_init(cae_ctx *ctx, cae_gemm_choice choice)
{
    return init_backend(ctx, choice, 1);
}

int cae_gemm_init_database(cae_ctx *ctx)
{
    return init_backend(ctx, CAE_GEMM_CLBLAST, 0);
}

void cae_gemm_limit_host_threads(int n)
{
    host_threads_limit = n;
}

void cae_gemm_free(cae_ctx *ctx)
{
    if (!ctx->gemm)
        return;
    cae_release(&ctx->gemm->temp);
    /* CLBlast caches programs built for this context; drop them while the
     * context still exists rather than in its exit-time destructors, which
     * would release them after the driver's own teardown */
    if (ctx->gemm->choice == CAE_GEMM_CLBLAST)
        CLBlastClearCache();
    free(ctx->gemm);
    ctx->gemm = NULL;
}

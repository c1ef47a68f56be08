/* bench_allreduce.c: how long the gradient all-reduce of a cae_base model
 * takes per step, and how much of it hides behind the backward pass.
 *
 *   mpirun -np 2 ./bench-allreduce [--bucket_mb 25] [--steps 5]
 *          [--backward_ms MS] [--sleep] [--model cae_base_patch16_224_8k_vocab]
 *
 * The gradient arena is the real one (cae_params_build on the preset, 98
 * masked patches). The backward pass is simulated: one stage per block
 * (and per head, norm, embedding), from the last table entry back; each
 * stage is a busy kernel whose length is the stage's share of MS
 * (proportional to its parameters) followed by cae_fill_float over the
 * stage's gradients, then cae_allreduce_ready for the stage's first tensor.
 * With --sleep the stage is instead a native kernel that sleeps (needs
 * CL_EXEC_NATIVE_KERNEL, as PoCL has): a device that is busy without using
 * the host's cores, like a GPU, where a busy kernel on a CPU device competes
 * with the all-reduce's copies for the same cores.
 * MS defaults to the measured time of the all-reduce alone (the case where
 * overlap matters most). Three timings, each the mean over the steps:
 *   backward alone, all-reduce alone (ready(0) + finish after the device
 *   is idle), and both overlapped;
 * overlapped fraction = (backward + all-reduce - overlapped) / all-reduce.
 * The all-reduce's own stats (comm_ms, hidden_ms, exposed_ms) are printed
 * per step too. A benchmark, not a test: make check builds it only.
 */
#include "mpi/allreduce.h"
#include "mpi/dist.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char busy_source[] =
    "__kernel void bench_busy(__global float *x, ulong x_off, int iters)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    float v = (float)i * 1e-6f;\n"
    "    for (int k = 0; k < iters; k++)\n"
    "        v = v * 0.9999f + 0.0001f;\n"
    "    x[x_off + i] = v;\n"
    "}\n";

enum { BUSY_ITEMS = 4096 };

typedef struct {
    size_t first, end; /* table indices [first, end) */
    size_t numel;
    int iters;         /* of the busy kernel */
    double sleep_ms;   /* of the native kernel (--sleep) */
} stage;

typedef struct {
    cae_dist dist;
    cae_ctx ctx;
    cae_param_table t;
    cae_arena g;
    cl_program prog;
    cl_kernel busy;
    cl_mem scratch;
    stage *stages;
    int n_stages;
    int sleep;         /* --sleep */
} bench;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

#define OR_ABORT(b, expr)                                                     \
    do {                                                                      \
        if ((expr) != 0)                                                      \
            cae_dist_abort(&(b)->dist, 1, "%s failed (%s:%d)", #expr,         \
                           __FILE__, __LINE__);                               \
    } while (0)

/* The stage a tensor belongs to: "encoder.blocks.3" for a block's
 * tensors, else the first two name components ("decoder.head"). */
static size_t stage_key(const char *name)
{
    const char *dot = strchr(name, '.');
    const char *second = dot ? dot + 1 : name;
    const char *end = strchr(second, '.');
    if (end && strstr(second, "blocks") && (size_t)(strstr(second, "blocks") - second) < (size_t)(end - second))
        end = strchr(end + 1, '.');
    return end ? (size_t)(end - name) : strlen(name);
}

static int same_stage(const char *a, const char *b)
{
    size_t ka = stage_key(a), kb = stage_key(b);
    return ka == kb && strncmp(a, b, ka) == 0;
}

static void plan_stages(bench *b)
{
    b->stages = calloc(b->t.n ? b->t.n : 1, sizeof *b->stages);
    if (!b->stages)
        cae_dist_abort(&b->dist, 1, "out of host memory");
    for (size_t i = 0; i < b->t.n; i++) {
        if (i == 0 || !same_stage(b->t.p[i].name, b->t.p[i - 1].name)) {
            b->stages[b->n_stages].first = i;
            b->n_stages++;
        }
        b->stages[b->n_stages - 1].end = i + 1;
        b->stages[b->n_stages - 1].numel += b->t.p[i].numel;
    }
}

static int build_busy(bench *b)
{
    cl_int err;
    const char *src = busy_source;
    b->prog = clCreateProgramWithSource(b->ctx.context, 1, &src, NULL, &err);
    CL_CHECK(err);
    CL_CHECK(clBuildProgram(b->prog, 1, &b->ctx.device, "-cl-std=CL1.2", NULL, NULL));
    b->busy = clCreateKernel(b->prog, "bench_busy", &err);
    CL_CHECK(err);
    CAE_TRY(cae_alloc(&b->ctx, BUSY_ITEMS * 4, &b->scratch));
    return 0;
}

static int busy(bench *b, int iters)
{
    size_t global = BUSY_ITEMS;
    cl_ulong off = 0;
    if (iters <= 0)
        return 0;
    CL_CHECK(clSetKernelArg(b->busy, 0, sizeof b->scratch, &b->scratch));
    CL_CHECK(clSetKernelArg(b->busy, 1, sizeof off, &off));
    CL_CHECK(clSetKernelArg(b->busy, 2, sizeof iters, &iters));
    CL_CHECK(clEnqueueNDRangeKernel(b->ctx.queue, b->busy, 1, NULL, &global, NULL, 0, NULL, NULL));
    return 0;
}

/* a native kernel: the device is busy for *(double *)args ms */
static void sleep_kernel(void *args)
{
    double ms;
    struct timespec ts;
    memcpy(&ms, args, sizeof ms);
    ts.tv_sec = (time_t)(ms / 1e3);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1e3) * 1e6);
    nanosleep(&ts, NULL);
}

static int device_sleep(bench *b, double ms)
{
    if (ms <= 0)
        return 0;
    CL_CHECK(clEnqueueNativeKernel(b->ctx.queue, sleep_kernel, &ms, sizeof ms, 0, NULL, NULL, 0,
                                   NULL, NULL));
    return 0;
}

/* milliseconds per busy-kernel iteration on this rank's device */
static double calibrate(bench *b)
{
    const int iters = 20000;
    double t0, best = 1e30;
    for (int k = 0; k < 3; k++) {
        t0 = now_ms();
        OR_ABORT(b, busy(b, iters));
        OR_ABORT(b, cae_finish(&b->ctx));
        if (now_ms() - t0 < best)
            best = now_ms() - t0;
    }
    return best / iters;
}

static void set_stage_iters(bench *b, double backward_ms, double ms_per_iter)
{
    for (int s = 0; s < b->n_stages; s++) {
        b->stages[s].sleep_ms = backward_ms * (double)b->stages[s].numel / (double)b->t.total;
        b->stages[s].iters = (int)(b->stages[s].sleep_ms / ms_per_iter + 0.5);
    }
}

/* Enqueue the simulated backward; report each stage to r when r != NULL. */
static void backward(bench *b, cae_allreduce *r, float value)
{
    for (int s = b->n_stages - 1; s >= 0; s--) {
        const stage *st = &b->stages[s];
        if (b->sleep)
            OR_ABORT(b, device_sleep(b, st->sleep_ms));
        else
            OR_ABORT(b, busy(b, st->iters));
        for (size_t i = st->first; i < st->end; i++) {
            const cae_param *p = &b->t.p[i];
            OR_ABORT(b, cae_fill_float(&b->ctx, (cae_buf){b->g.mem[p->chunk], p->off}, value, p->numel));
        }
        if (r)
            OR_ABORT(b, cae_allreduce_ready(r, st->first));
        else
            OR_ABORT(b, clFlush(b->ctx.queue) != CL_SUCCESS);
    }
}

static double time_backward(bench *b)
{
    double t0;
    MPI_Barrier(b->dist.comm);
    t0 = now_ms();
    backward(b, NULL, 1.0f);
    OR_ABORT(b, cae_finish(&b->ctx));
    return now_ms() - t0;
}

static double time_allreduce(bench *b, cae_allreduce *r)
{
    double t0;
    OR_ABORT(b, cae_finish(&b->ctx));
    MPI_Barrier(b->dist.comm);
    t0 = now_ms();
    OR_ABORT(b, cae_allreduce_ready(r, 0));
    OR_ABORT(b, cae_allreduce_finish(r));
    OR_ABORT(b, cae_finish(&b->ctx));
    return now_ms() - t0;
}

static double time_overlapped(bench *b, cae_allreduce *r)
{
    double t0;
    MPI_Barrier(b->dist.comm);
    t0 = now_ms();
    backward(b, r, (float)(b->dist.rank + 1));
    OR_ABORT(b, cae_allreduce_finish(r));
    OR_ABORT(b, cae_finish(&b->ctx));
    return now_ms() - t0;
}

/* every gradient is (1 + 2 + ... + world) / world after an overlapped step */
static void check_average(bench *b)
{
    const cae_param *p = &b->t.p[b->t.n - 1];
    float got[4] = {0}, want = (float)(b->dist.world + 1) / 2.0f;
    OR_ABORT(b, cae_read(&b->ctx, got, (cae_buf){b->g.mem[p->chunk], p->off}, sizeof got));
    for (int i = 0; i < 4; i++)
        if (got[i] != want)
            cae_dist_abort(&b->dist, 1, "%s[%d] = %g after the all-reduce, want %g", p->name, i,
                           (double)got[i], (double)want);
}

static void usage(void)
{
    printf("usage: mpirun -np N bench-allreduce [--bucket_mb MB (25)] [--steps N (5)]\n"
           "       [--backward_ms MS (the all-reduce's own time)] [--sleep] [--model NAME]\n"
           "  --sleep: the simulated backward sleeps on the device instead of computing\n");
}

/* The flags; the rest as they default. */
typedef struct {
    const char *model;
    double bucket_mb, backward_ms; /* backward_ms < 0: the all-reduce's own time */
    int steps;
} flags;

/* Parses argv into f: 0, or 1 after --help (printed by rank 0); a bad flag
 * stops every rank. */
static int parse_flags(bench *b, int argc, char **argv, flags *f)
{
    *f = (flags){"cae_base_patch16_224_8k_vocab", 25, -1, 5};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0) {
            if (b->dist.rank == 0)
                usage();
            return 1;
        } else if (strcmp(argv[i], "--sleep") == 0) {
            b->sleep = 1;
            continue;
        } else if (v && strcmp(argv[i], "--bucket_mb") == 0) {
            f->bucket_mb = atof(v);
        } else if (v && strcmp(argv[i], "--steps") == 0) {
            f->steps = atoi(v);
        } else if (v && strcmp(argv[i], "--backward_ms") == 0) {
            f->backward_ms = atof(v);
        } else if (v && strcmp(argv[i], "--model") == 0) {
            f->model = v;
        } else {
            cae_dist_abort(&b->dist, 2, "unknown or incomplete argument %s (try --help)", argv[i]);
        }
        i++;
    }
    if (f->bucket_mb * (1 << 20) < 4 || f->steps < 1)
        cae_dist_abort(&b->dist, 2, "--bucket_mb must be >= 4 bytes and --steps >= 1");
    return 0;
}

/* The device, the model's gradient arena, the busy kernel, the stages and
 * the all-reduce; any failure stops every rank. */
static cae_allreduce *setup(bench *b, const flags *f)
{
    cae_ctx_options opt;
    cae_config c;
    cae_allreduce *r;
    memset(&opt, 0, sizeof opt);
    opt.gemm = CAE_GEMM_AUTO;
    opt.device_slot = b->dist.device_slot;
    opt.host_threads = b->dist.host_threads;
    OR_ABORT(b, cae_ctx_init(&b->ctx, &opt));
    OR_ABORT(b, cae_dist_device_table(&b->dist, &b->ctx));
    if (b->sleep && !b->ctx.native_kernels)
        cae_dist_abort(&b->dist, 2, "--sleep needs native kernels, which %s lacks",
                       b->ctx.device_name);
    cae_config_defaults(&c);
    OR_ABORT(b, cae_config_preset(&c, f->model));
    c.num_mask_patches = 98;
    OR_ABORT(b, cae_config_finish(&c));
    OR_ABORT(b, cae_params_build(&b->t, &c, cae_params_chunk_limit(&b->ctx)));
    OR_ABORT(b, cae_arena_alloc(&b->ctx, &b->t, &b->g));
    OR_ABORT(b, cae_arena_zero(&b->ctx, &b->t, &b->g));
    OR_ABORT(b, build_busy(b));
    plan_stages(b);
    OR_ABORT(b, cae_allreduce_new(&r, &b->ctx, &b->t, &b->g, b->dist.comm,
                                  (size_t)(f->bucket_mb * (1 << 20))));
    if (b->dist.rank == 0)
        printf("%s: %zu tensors, %zu gradient bytes (%.1f MiB) in %d buffer(s); %d ranks, "
               "%d bucket(s) of <= %.2f MiB, %d backward stages\n",
               f->model, b->t.n, cae_allreduce_last(r)->bytes,
               (double)cae_allreduce_last(r)->bytes / (1 << 20), b->t.n_chunks, b->dist.world,
               cae_allreduce_last(r)->buckets, f->bucket_mb, b->n_stages);
    return r;
}

/* Means over the steps (rank 0's). */
typedef struct {
    double bwd, comm, both;                 /* backward alone, all-reduce alone, both */
    double st_comm, st_hidden, st_exposed;  /* the all-reduce's own account of both */
} timings;

/* Each of the three runs once to warm up, then f->steps times. */
static void measure(bench *b, cae_allreduce *r, flags *f, timings *m)
{
    double ms_per_iter;
    int steps = f->steps;
    memset(m, 0, sizeof *m);
    /* warm-up, then the all-reduce alone sets the default backward length */
    (void)time_allreduce(b, r);
    for (int s = 0; s < steps; s++)
        m->comm += time_allreduce(b, r) / steps;
    ms_per_iter = calibrate(b);
    if (f->backward_ms < 0)
        f->backward_ms = m->comm;
    /* every rank runs the same stages (rank 0's calibration) */
    MPI_Bcast(&ms_per_iter, 1, MPI_DOUBLE, 0, b->dist.comm);
    MPI_Bcast(&f->backward_ms, 1, MPI_DOUBLE, 0, b->dist.comm);
    set_stage_iters(b, f->backward_ms, ms_per_iter);
    (void)time_backward(b);
    for (int s = 0; s < steps; s++)
        m->bwd += time_backward(b) / steps;
    (void)time_overlapped(b, r);
    for (int s = 0; s < steps; s++) {
        double t = time_overlapped(b, r);
        const cae_allreduce_stats *st = cae_allreduce_last(r);
        m->both += t / steps;
        m->st_comm += st->comm_ms / steps;
        m->st_hidden += st->hidden_ms / steps;
        m->st_exposed += st->exposed_ms / steps;
        if (b->dist.rank == 0)
            printf("step %d: total %.1f ms, communication %.1f ms (%.1f ms of it during the "
                   "backward), finish after the last read %.1f ms, finish %.1f ms\n",
                   s, t, st->comm_ms, st->hidden_ms, st->exposed_ms, st->finish_ms);
    }
}

static void report(const bench *b, const flags *f, const timings *m)
{
    double hidden = (m->bwd + m->comm - m->both) / m->comm;
    printf("simulated backward: %s\n", b->sleep ? "sleeping native kernels (host cores free)"
                                                : "busy kernels (on the host's cores)");
    printf("mean over %d steps (rank 0): backward alone %.1f ms (asked %.1f), all-reduce "
           "alone %.1f ms, both %.1f ms\n",
           f->steps, m->bwd, f->backward_ms, m->comm, m->both);
    printf("exposed all-reduce %.1f ms: %.0f%% of the all-reduce overlaps the backward\n",
           m->both - m->bwd, 100 * (hidden < 0 ? 0 : hidden > 1 ? 1 : hidden));
    printf("all-reduce stats: communication span %.1f ms, %.1f ms (%.0f%%) of it during the "
           "backward; finish after the last read %.1f ms\n",
           m->st_comm, m->st_hidden, m->st_comm > 0 ? 100 * m->st_hidden / m->st_comm : 0.0,
           m->st_exposed);
}

int main(int argc, char **argv)
{
    bench b;
    flags f;
    timings m;
    cae_allreduce *r;

    memset(&b, 0, sizeof b);
    if (cae_dist_init(&b.dist, &argc, &argv) != 0)
        return 1;
    if (parse_flags(&b, argc, argv, &f) != 0) {
        cae_dist_finalize(&b.dist);
        return 0;
    }
    r = setup(&b, &f);
    measure(&b, r, &f, &m);
    check_average(&b);
    if (b.dist.rank == 0)
        report(&b, &f, &m);
    cae_allreduce_free(r);
    clReleaseMemObject(b.scratch);
    clReleaseKernel(b.busy);
    clReleaseProgram(b.prog);
    cae_arena_free(&b.g);
    cae_params_free(&b.t);
    free(b.stages);
    cae_ctx_free(&b.ctx);
    cae_dist_finalize(&b.dist);
    return 0;
}

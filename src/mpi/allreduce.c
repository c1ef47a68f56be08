/* allreduce.c: the bucketed, overlapped gradient all-reduce of allreduce.h.
 *
 * One step, as the device queue and the host see it:
 *   backward stage k enqueued -> cae_allreduce_ready: non-blocking reads of
 *   the newly complete buckets into their staging (event on the last read)
 *   ... -> cae_allreduce_finish: per bucket, wait for its read (progressing
 *   the all-reduces already started while waiting), MPI_Iallreduce in place;
 *   each bucket whose all-reduce is done (in bucket order) is divided by the
 *   number of ranks and its writes back are enqueued at once, so that host
 *   pass also hides behind the backward. The queue is in order, so the
 *   optimizer enqueued next sees the averages, and the next step's reads
 *   into the same staging come after these writes have consumed it.
 */
#include "mpi/allreduce.h"

#include "runtime/errors.h"
#include "mpi/mpi_check.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* MPI counts are ints: a bucket above this many elements is reduced in parts */
#define PART_ELEMS ((size_t)1 << 30)
/* staging of each bucket starts on a cache line */
#define STAGE_ALIGN_ELEMS 16
/* how long the host sleeps between polls of a pending read while
 * all-reduces are in flight (MPI progresses only inside MPI calls) */
#define POLL_NS 20000L

typedef struct {
    cl_mem mem;
    size_t off_bytes, bytes; /* in the arena buffer */
    float *stage;            /* its place in the bucket's staging */
} ar_tensor;

typedef struct {
    size_t first, count; /* its tensors: r->tensors[first, first + count) */
    size_t lo;           /* lowest table index among them */
    float *stage;        /* count tensors packed back to back */
    size_t elems;
    int parts;           /* MPI_Iallreduce calls (elems / PART_ELEMS, rounded up) */
    int req0;            /* its first request in r->reqs */
    cl_event read_done;  /* the bucket's last read this step; NULL before ready */
} ar_bucket;

struct cae_allreduce {
    cae_ctx *ctx;
    MPI_Comm comm; /* a duplicate of the caller's: our collectives stay apart */
    int world;
    ar_tensor *tensors;
    size_t n_tensors;
    ar_bucket *buckets;
    int n_buckets;
    int next_read;      /* first bucket whose reads this step are not enqueued */
    int next_done;      /* first bucket not yet averaged and written back */
    float *staging;     /* every bucket's staging, one allocation */
    MPI_Request *reqs;  /* one per part of every bucket */
    int n_reqs;
    int in_flight;      /* requests started and not known complete */
    int broken;         /* a step failed part-way: refuse further steps */
    cae_allreduce_stats stats;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* Group the non-empty tensors, from the last table entry back, into
 * buckets of at most bucket_bytes (a bigger tensor alone). */
static int plan_buckets(cae_allreduce *r, const cae_param_table *t, const cae_arena *grads,
                        size_t bucket_bytes)
{
    size_t bucket_fill = 0;
    r->tensors = calloc(t->n ? t->n : 1, sizeof *r->tensors);
    r->buckets = calloc(t->n ? t->n : 1, sizeof *r->buckets);
    if (!r->tensors || !r->buckets) {
        cae_errorf("out of host memory planning the gradient buckets");
        return -1;
    }
    for (size_t i = t->n; i-- > 0;) {
        const cae_param *p = &t->p[i];
        ar_tensor *x;
        ar_bucket *b;
        size_t bytes = p->numel * 4;
        if (p->numel == 0)
            continue;
        if (r->n_buckets == 0 || bucket_fill + bytes > bucket_bytes) {
            b = &r->buckets[r->n_buckets++];
            b->first = r->n_tensors;
            bucket_fill = 0;
        }
        b = &r->buckets[r->n_buckets - 1];
        x = &r->tensors[r->n_tensors++];
        x->mem = grads->mem[p->chunk];
        x->off_bytes = p->off * 4;
        x->bytes = bytes;
        b->count++;
        b->lo = i;
        b->elems += p->numel;
        bucket_fill += bytes;
    }
    for (int k = 0; k < r->n_buckets; k++) {
        ar_bucket *b = &r->buckets[k];
        b->parts = (int)((b->elems + PART_ELEMS - 1) / PART_ELEMS);
        b->req0 = r->n_reqs;
        r->n_reqs += b->parts;
        r->stats.bytes += b->elems * 4;
    }
    return 0;
}

/* One block for every bucket's staging (each starts aligned; its tensors
 * packed back to back) and the requests. */
static int attach_staging(cae_allreduce *r)
{
    void *block = NULL;
    size_t elems = 0, at = 0;
    int err;
    for (int k = 0; k < r->n_buckets; k++)
        elems += round_up(r->buckets[k].elems, STAGE_ALIGN_ELEMS);
    err = posix_memalign(&block, STAGE_ALIGN_ELEMS * 4, (elems ? elems : 1) * sizeof(float));
    if (err != 0) {
        cae_errorf("cannot allocate %zu bytes of gradient staging: %s", elems * sizeof(float),
                   strerror(err));
        return -1;
    }
    r->staging = block;
    for (int k = 0; k < r->n_buckets; k++) {
        ar_bucket *b = &r->buckets[k];
        size_t in = 0;
        b->stage = r->staging + at;
        for (size_t j = 0; j < b->count; j++) {
            r->tensors[b->first + j].stage = b->stage + in;
            in += r->tensors[b->first + j].bytes / 4;
        }
        at += round_up(b->elems, STAGE_ALIGN_ELEMS);
    }
    r->reqs = malloc((size_t)(r->n_reqs ? r->n_reqs : 1) * sizeof *r->reqs);
    if (!r->reqs) {
        cae_errorf("out of host memory for the all-reduce requests");
        return -1;
    }
    for (int q = 0; q < r->n_reqs; q++)
        r->reqs[q] = MPI_REQUEST_NULL;
    return 0;
}

int cae_allreduce_new(cae_allreduce **out, cae_ctx *ctx, const cae_param_table *t,
                      const cae_arena *grads, MPI_Comm comm, size_t bucket_bytes)
{
    cae_allreduce *r;
    *out = NULL;
    if (bucket_bytes < 4) {
        cae_errorf("all-reduce bucket size %zu bytes: must be at least 4 (one float)", bucket_bytes);
        return -1;
    }
    if (grads->n != t->n_chunks) {
        cae_errorf("gradient arena has %d buffers, its table %d", grads->n, t->n_chunks);
        return -1;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        cae_errorf("out of host memory");
        return -1;
    }
    r->ctx = ctx;
    r->comm = MPI_COMM_NULL;
    if (MPI_Comm_size(comm, &r->world) != MPI_SUCCESS) {
        cae_errorf("MPI_Comm_size failed on the all-reduce communicator");
        free(r);
        return -1;
    }
    if (r->world == 1) {
        /* nothing to average: no buckets, no staging */
        for (size_t i = 0; i < t->n; i++)
            r->stats.bytes += t->p[i].numel * 4;
        *out = r;
        return 0;
    }
    if (MPI_Comm_dup(comm, &r->comm) != MPI_SUCCESS) {
        cae_errorf("MPI_Comm_dup of the all-reduce communicator failed");
        free(r);
        return -1;
    }
    if (plan_buckets(r, t, grads, bucket_bytes) != 0 || attach_staging(r) != 0) {
        cae_allreduce_free(r);
        return -1;
    }
    r->stats.buckets = r->n_buckets;
    *out = r;
    return 0;
}

static void release_reads(cae_allreduce *r)
{
    for (int k = 0; k < r->n_buckets; k++)
        if (r->buckets[k].read_done) {
            clReleaseEvent(r->buckets[k].read_done);
            r->buckets[k].read_done = NULL;
        }
}

void cae_allreduce_free(cae_allreduce *r)
{
    int finalized = 0;
    if (!r)
        return;
    /* pending write-backs read the staging */
    if (r->staging && clFinish(r->ctx->queue) != CL_SUCCESS)
        cae_errorf("clFinish before freeing the gradient staging failed");
    release_reads(r);
    /* after a failed step MPI may still write into the staging: keep it */
    if (!r->in_flight) {
        free(r->staging);
        free(r->reqs);
    }
    MPI_Finalized(&finalized);
    if (!finalized && r->comm != MPI_COMM_NULL)
        MPI_Comm_free(&r->comm);
    free(r->tensors);
    free(r->buckets);
    free(r);
}

static int enqueue_reads(cae_allreduce *r, ar_bucket *b)
{
    cl_command_queue q = r->ctx->queue;
    for (size_t j = 0; j < b->count; j++) {
        const ar_tensor *x = &r->tensors[b->first + j];
        int last = j + 1 == b->count;
        CL_CHECK(clEnqueueReadBuffer(q, x->mem, CL_FALSE, x->off_bytes, x->bytes, x->stage, 0, NULL,
                                     last ? &b->read_done : NULL));
    }
    return 0;
}

int cae_allreduce_ready(void *user, size_t first)
{
    cae_allreduce *r = user;
    int enqueued = 0;
    if (r->world == 1)
        return 0;
    if (r->broken) {
        cae_errorf("gradient all-reduce: an earlier step failed");
        return -1;
    }
    /* buckets run from the last table entry back: their lo decreases */
    while (r->next_read < r->n_buckets && r->buckets[r->next_read].lo >= first) {
        if (enqueue_reads(r, &r->buckets[r->next_read]) != 0) {
            r->broken = 1;
            return -1;
        }
        r->next_read++;
        enqueued = 1;
    }
    if (enqueued) {
        cl_int err = clFlush(r->ctx->queue);
        if (err != CL_SUCCESS) {
            cae_cl_error("clFlush(r->ctx->queue)", err, __FILE__, __LINE__);
            r->broken = 1;
            return -1;
        }
    }
    return 0;
}

/* Average bucket b in its staging and enqueue the writes back (not waited
 * for: the staging is next written by the next step's reads, which the
 * in-order queue puts after these writes). */
static int write_back(cae_allreduce *r, const ar_bucket *b)
{
    const float world = (float)r->world;
    float *x = b->stage;
    for (size_t i = 0; i < b->elems; i++)
        x[i] /= world;
    for (size_t j = 0; j < b->count; j++) {
        const ar_tensor *t = &r->tensors[b->first + j];
        CL_CHECK(clEnqueueWriteBuffer(r->ctx->queue, t->mem, CL_FALSE, t->off_bytes, t->bytes,
                                      t->stage, 0, NULL, NULL));
    }
    CL_CHECK(clFlush(r->ctx->queue));
    return 0;
}

/* Write back, in order, the started buckets whose all-reduce has completed
 * (wait: all of them, blocking). Every MPI test also moves the others on. */
static int retire(cae_allreduce *r, int started, int wait, double *t_done)
{
    while (r->next_done < started) {
        ar_bucket *b = &r->buckets[r->next_done];
        int flag = 1;
        if (wait)
            MPI_TRY(MPI_Waitall(b->parts, r->reqs + b->req0, MPI_STATUSES_IGNORE));
        else
            MPI_TRY(MPI_Testall(b->parts, r->reqs + b->req0, &flag, MPI_STATUSES_IGNORE));
        if (!flag)
            break;
        *t_done = now_ms();
        CAE_TRY(write_back(r, b));
        r->next_done++;
    }
    r->in_flight = r->next_done < started;
    return 0;
}

/* Wait for bucket k's staging to hold its gradients. While all-reduces are
 * in flight, poll the read and MPI in turn: Open MPI moves a non-blocking
 * collective forward only inside MPI calls, so a blocking wait on the
 * device here would stall the buckets already on the network. */
static int wait_read(cae_allreduce *r, int k, double *t_done)
{
    const struct timespec pause = {0, POLL_NS};
    ar_bucket *b = &r->buckets[k];
    while (r->in_flight) {
        cl_int status;
        CL_CHECK(clGetEventInfo(b->read_done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status,
                                &status, NULL));
        if (status <= CL_COMPLETE) /* done, or failed: clWaitForEvents reports it */
            break;
        CAE_TRY(retire(r, k, 0, t_done));
        if (r->in_flight)
            nanosleep(&pause, NULL);
    }
    CL_CHECK(clWaitForEvents(1, &b->read_done));
    return 0;
}

static int start_bucket(cae_allreduce *r, const ar_bucket *b)
{
    for (int part = 0; part < b->parts; part++) {
        size_t at = (size_t)part * PART_ELEMS;
        size_t n = b->elems - at < PART_ELEMS ? b->elems - at : PART_ELEMS;
        MPI_TRY(MPI_Iallreduce(MPI_IN_PLACE, b->stage + at, (int)n, MPI_FLOAT, MPI_SUM, r->comm,
                               &r->reqs[b->req0 + part]));
        r->in_flight = 1;
    }
    return 0;
}

static int finish_step(cae_allreduce *r)
{
    double t_start = now_ms(), t_comm = 0, t_done = 0, t_last_read = t_start, t_end;
    r->next_done = 0;
    /* buckets the backward pass did not report (or all, without a hook) */
    CAE_TRY(cae_allreduce_ready(r, 0));
    for (int k = 0; k < r->n_buckets; k++) {
        CAE_TRY(wait_read(r, k, &t_done));
        t_last_read = now_ms();
        if (k == 0)
            t_comm = t_last_read;
        CAE_TRY(start_bucket(r, &r->buckets[k]));
        CAE_TRY(retire(r, k + 1, 0, &t_done));
    }
    CAE_TRY(retire(r, r->n_buckets, 1, &t_done));
    t_end = now_ms();
    r->stats.comm_ms = r->n_buckets ? t_done - t_comm : 0;
    r->stats.hidden_ms = r->n_buckets && t_last_read > t_comm
                             ? (t_done < t_last_read ? t_done : t_last_read) - t_comm
                             : 0;
    r->stats.exposed_ms = t_end - t_last_read;
    r->stats.finish_ms = t_end - t_start;
    return 0;
}

int cae_allreduce_finish(cae_allreduce *r)
{
    int rc;
    if (r->world == 1)
        return 0;
    if (r->broken) {
        cae_errorf("gradient all-reduce: an earlier step failed");
        return -1;
    }
    rc = finish_step(r);
    release_reads(r);
    r->next_read = 0;
    if (rc != 0)
        r->broken = 1;
    return rc;
}

const cae_allreduce_stats *cae_allreduce_last(const cae_allreduce *r)
{
    return &r->stats;
}

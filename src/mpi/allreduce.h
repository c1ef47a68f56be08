/* allreduce.h: averaging the gradient arena across MPI ranks, in buckets
 * that overlap the rest of the backward pass.
 *
 * The tensors are grouped, in reverse table order (the order in which the
 * backward pass finishes them), into buckets of about bucket_bytes. Each
 * bucket has a persistent host staging buffer. When the model reports that
 * a bucket's gradients are final (cae_allreduce_ready, called from the
 * backward pass as it enqueues work), the bucket's tensors are read into
 * its staging buffer without waiting. cae_allreduce_finish then takes the
 * buckets in order: waits for the bucket's read (polling MPI meanwhile),
 * starts MPI_Iallreduce (sum) on it, progresses the others, and as each
 * bucket completes (in order) divides it by the number of ranks and writes
 * the averages back (enqueued, so the optimizer that follows in the queue
 * sees them). While bucket k is on the network the device is still
 * computing the gradients of later buckets. Every rank gets the same bits
 * (checked with Open MPI by tests/check/test_allreduce, 2 and 3 ranks). */
#ifndef CAE_ALLREDUCE_H
#define CAE_ALLREDUCE_H

#include "model/params.h"
#include "runtime/runtime.h"

#include <mpi.h>
#include <stddef.h>

typedef struct cae_allreduce cae_allreduce;

typedef struct {
    size_t bytes;        /* gradient bytes reduced per step */
    int buckets;
    double comm_ms;      /* from the first MPI_Iallreduce to the last completion */
    double exposed_ms;   /* time cae_allreduce_finish spent after the last read completed
                          * (communication not hidden behind backward) */
    double finish_ms;    /* the whole of cae_allreduce_finish */
    double hidden_ms;    /* the part of comm_ms before the last read completed: the
                          * communication in flight while the backward still ran */
} cae_allreduce_stats;

/* All of t's tensors take part; bucket_bytes >= 4 (a tensor larger than a
 * bucket is a bucket of its own). Staging is allocated here, once. A
 * collective call over comm (it duplicates comm for its own traffic); the
 * bucket plan depends only on t's entries and bucket_bytes, so ranks whose
 * arenas split differently still agree. On a communicator of one rank
 * every call is a no-op (stats: bytes set, buckets 0, no staging). */
int cae_allreduce_new(cae_allreduce **out, cae_ctx *ctx, const cae_param_table *t,
                      const cae_arena *grads, MPI_Comm comm, size_t bucket_bytes);
void cae_allreduce_free(cae_allreduce *r);

/* The gradients of every tensor with table index >= first are final (their
 * kernels are enqueued): enqueue the reads of the buckets that are now
 * complete. What the queue holds for them at this point is what gets
 * averaged (finish's write-back replaces it). Repeated or skipped
 * watermarks are fine; a larger one after a smaller does nothing. Matches
 * the model's grads_ready hook (user = the cae_allreduce). */
int cae_allreduce_ready(void *r, size_t first);

/* After the backward pass is enqueued: complete every bucket (as above) and
 * enqueue the averaged gradients' write-back. Buckets never reported ready
 * are read here first, so finish alone (no hook) is a whole all-reduce.
 * Returns -1 (reported, naming the MPI or OpenCL call) on failure, after
 * which the object refuses further steps (free it). */
int cae_allreduce_finish(cae_allreduce *r);

const cae_allreduce_stats *cae_allreduce_last(const cae_allreduce *r);

#endif

/* dist.h: the ranks of a data-parallel run (Open MPI).
 *
 * cae_dist_init starts MPI, finds the node-local rank (OMPI_COMM_WORLD_LOCAL_RANK,
 * else MPI_Comm_split_type), and prepares the environment each rank's OpenCL
 * context is created in: the device (CAE_CL_PLATFORM / CAE_CL_DEVICE may be
 * comma-separated lists indexed by the local rank; by default the local rank
 * modulo the number of devices), a PoCL kernel cache folder of its own
 * (POCL_CACHE_DIR, unless set), and POCL_MAX_PTHREAD_COUNT = cores / local
 * ranks (unless set), so ranks sharing a CPU do not fight over it. A process
 * not started by mpirun is a world of one and does not start MPI at all. */
#ifndef CAE_DIST_H
#define CAE_DIST_H

#include "model/params.h"
#include "runtime/runtime.h"

#include <mpi.h>
#include <stdint.h>

typedef struct {
    int rank, world;
    int local_rank, local_size;
    int device_slot;   /* which default device this rank takes (local rank) */
    int host_threads;  /* CPU threads this rank should use (cores / local ranks) */
    MPI_Comm comm;     /* MPI_COMM_WORLD */
    int mpi_started;   /* 0 for a plain process (not launched by mpirun) */
} cae_dist;

int cae_dist_init(cae_dist *d, int *argc, char ***argv);
void cae_dist_finalize(cae_dist *d);

/* Stop every rank: print "cae-cl: rank R: <message>" and MPI_Abort. */
void cae_dist_abort(const cae_dist *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Rank 0 prints the rank -> host -> device table (a collective call). */
int cae_dist_device_table(const cae_dist *d, const cae_ctx *ctx);

/* v[0..n) summed over ranks, in place (a collective call). */
int cae_dist_sum(const cae_dist *d, double *v, int n);

/* Every rank's v[0..n) (digests of what must match: flags, the data set)
 * must equal rank 0's: 0 when they do, 1 when not, with *rank the lowest
 * rank that differs and *item its first differing index (every rank learns
 * the same; the caller reports), -1 when the collective fails (reported).
 * A collective call. */
int cae_dist_check_same(const cae_dist *d, const uint64_t *v, int n, int *rank, int *item);

/* Every rank's parameters must be identical: compare a checksum of the
 * arena with rank 0's; -1 (reported by every rank, naming the ranks that
 * differ) when they are not. A collective call. */
int cae_dist_check_sync(const cae_dist *d, cae_ctx *ctx, const cae_param_table *t,
                        const cae_arena *params, uint64_t step);

#endif

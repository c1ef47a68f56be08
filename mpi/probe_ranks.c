/* probe_ranks.c: the probes' multi-rank hooks over Open MPI (see
 * probe_ranks.h). The heads' tensors are small (tens of thousands of
 * floats): one blocking collective each. */
#include "probe_ranks.h"

#include "mpi_check.h"

#include <limits.h>

static int mean_f32(void *user, float *v, size_t n)
{
    const cae_dist *d = user;
    if (n > INT_MAX) {
        cae_errorf("internal error: %zu floats in one all-reduce", n);
        return -1;
    }
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, d->comm));
    for (size_t i = 0; i < n; i++)
        v[i] /= (float)d->world;
    return 0;
}

static int sum_f64(void *user, double *v, int n)
{
    return cae_dist_sum(user, v, n);
}

static int bcast_f32(void *user, float *v, size_t n)
{
    const cae_dist *d = user;
    if (n > INT_MAX) {
        cae_errorf("internal error: %zu floats in one broadcast", n);
        return -1;
    }
    MPI_TRY(MPI_Bcast(v, (int)n, MPI_FLOAT, 0, d->comm));
    return 0;
}

void cae_probe_ranks_init(cae_probe_ranks *r, cae_dist *d)
{
    r->rank = d->rank;
    r->world = d->world;
    r->user = d;
    r->mean_f32 = mean_f32;
    r->sum_f64 = sum_f64;
    r->bcast_f32 = bcast_f32;
}

/* probe_ranks.c: the probes' multi-rank hooks over Open MPI and their
 * common main() (see probe_ranks.h). The heads' tensors are small (tens of
 * thousands of floats): one blocking collective each. */
#include "mpi/probe_ranks.h"

#include "runtime/errors.h"
#include "mpi/mpi_check.h"

#include <limits.h>
#include <stdio.h>

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

/* --help: the program's line, then what every probe does */
static void usage(const cae_probe_program *prog)
{
    char about[1024];
    snprintf(about, sizeof about,
             "%s;\nwithout --data_path: Fashion-MNIST's 60k/10k split with the built-in model;\n"
             "under mpirun: data parallel, --batch_size per rank", prog->about);
    cae_args_usage(stdout, prog->name, about);
}

int cae_probe_main(int argc, char **argv, const cae_probe_program *prog, cae_probe *p,
                   void *head_state)
{
    static cae_dist dist;
    int rc;
    if (cae_dist_init(&dist, &argc, &argv) != 0)
        return 1;
    if (dist.world > 1)
        cae_error_set_rank(dist.rank);
    cae_probe_ranks_init(&p->ranks, &dist);
    if (cae_args_parse(&p->a, argc, argv) != 0 ||
        cae_args_check_probe(&p->a, prog->linear_type) != 0) {
        rc = 2;
    } else if (p->a.help || p->a.list_devices) {
        if (p->a.help && dist.rank == 0)
            usage(prog);
        rc = p->a.list_devices && dist.rank == 0 ? (cae_list_devices(stdout) == 0 ? 0 : 1) : 0;
    } else if (p->a.eval && (!p->a.resume || !p->a.resume[0])) {
        cae_errorf("--eval: give the head to evaluate with --resume (a checkpoint-%s.safetensors)",
                   prog->head);
        rc = 2;
    } else {
        rc = prog->run(p, head_state, argc, argv);
        prog->free_head(head_state);
        cae_probe_teardown(p);
        if (rc != 0 && dist.world > 1)
            cae_dist_abort(&dist, 1, "%s probing failed (the cause is above)", prog->head);
    }
    cae_dist_finalize(&dist);
    return rc;
}

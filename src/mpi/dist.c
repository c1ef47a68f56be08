/* dist.c: MPI start-up, rank -> device mapping and rank-wide checks. */
#include "mpi/dist.h"

#include "runtime/digest.h"
#include "runtime/errors.h"
#include "mpi/mpi_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Element `index` (modulo their count) of a comma-separated list, written
 * into out; a value without commas is every rank's. */
static void pick_from_list(const char *list, int index, char *out, size_t size)
{
    int count = 1, k;
    const char *p = list, *end;
    for (const char *c = list; *c; c++)
        count += *c == ',';
    k = index % count;
    for (; k > 0; k--)
        p = strchr(p, ',') + 1;
    end = strchr(p, ',');
    snprintf(out, size, "%.*s", (int)(end ? (size_t)(end - p) : strlen(p)), p);
}

static void select_from_env_list(const char *name, int local_rank)
{
    const char *v = getenv(name);
    char one[256];
    if (!v || !strchr(v, ','))
        return;
    pick_from_list(v, local_rank, one, sizeof one);
    setenv(name, one, 1);
}

static int local_rank_of(cae_dist *d)
{
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    MPI_Comm node;
    if (lr && ls) {
        d->local_rank = atoi(lr);
        d->local_size = atoi(ls);
        return 0;
    }
    MPI_TRY(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node));
    MPI_TRY(MPI_Comm_rank(node, &d->local_rank));
    MPI_TRY(MPI_Comm_size(node, &d->local_size));
    MPI_TRY(MPI_Comm_free(&node));
    return 0;
}

int cae_dist_init(cae_dist *d, int *argc, char ***argv)
{
    int provided;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char value[4096];
    memset(d, 0, sizeof *d);
    d->world = 1;
    d->local_size = 1;
    d->host_threads = (int)(cores > 0 ? cores : 1);
    d->comm = MPI_COMM_WORLD;
    /* started by mpirun (Open MPI, or a PMI launcher)? */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_RANK"))
        return 0;
    /* one thread makes MPI calls (loader threads never do) */
    MPI_TRY(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    d->mpi_started = 1;
    d->comm = MPI_COMM_WORLD;
    MPI_TRY(MPI_Comm_rank(d->comm, &d->rank));
    MPI_TRY(MPI_Comm_size(d->comm, &d->world));
    CAE_TRY(local_rank_of(d));
    if (d->local_size < 1)
        d->local_size = 1;
    d->device_slot = d->local_rank;
    d->host_threads = (int)(cores > 0 ? cores : 1) / d->local_size;
    if (d->host_threads < 1)
        d->host_threads = 1;
    if (d->world == 1)
        return 0;
    /* the environment of this rank's OpenCL context (created after this) */
    select_from_env_list("CAE_CL_PLATFORM", d->local_rank);
    select_from_env_list("CAE_CL_DEVICE", d->local_rank);
    if (!getenv("POCL_CACHE_DIR")) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(value, sizeof value, "%s/pocl-rank%d", xdg, d->local_rank);
        else
            snprintf(value, sizeof value, "%s/.cache/pocl-rank%d", home && *home ? home : "/tmp",
                     d->local_rank);
        setenv("POCL_CACHE_DIR", value, 1);
    }
    if (!getenv("POCL_MAX_PTHREAD_COUNT")) {
        snprintf(value, sizeof value, "%d", d->host_threads);
        setenv("POCL_MAX_PTHREAD_COUNT", value, 1);
    }
    return 0;
}

void cae_dist_finalize(cae_dist *d)
{
    int done = 0;
    if (!d->mpi_started)
        return;
    MPI_Finalized(&done);
    if (!done)
        MPI_Finalize();
}

void cae_dist_abort(const cae_dist *d, int code, const char *fmt, ...)
{
    va_list ap;
    char msg[2048];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cae-cl: rank %d: %s; stopping every rank\n", d->rank, msg);
    fflush(stderr);
    if (d->mpi_started)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code); /* not reached */
}

int cae_dist_device_table(const cae_dist *d, const cae_ctx *ctx)
{
    enum { ROW = 512 };
    char row[ROW], host[256] = "?";
    char *all = NULL;
    gethostname(host, sizeof host - 1);
    /* a long device name is cut to the row */
    if (snprintf(row, sizeof row, "%-5d %-20.20s %-5d %.200s (%.200s)", d->rank, host, d->local_rank,
                 ctx->device_name, ctx->platform_name) < 0)
        row[0] = '\0';
    if (d->rank == 0) {
        all = malloc((size_t)d->world * ROW);
        if (!all) {
            cae_errorf("out of host memory");
            return -1;
        }
    }
    MPI_TRY(MPI_Gather(row, ROW, MPI_CHAR, all, ROW, MPI_CHAR, 0, d->comm));
    if (d->rank == 0) {
        printf("rank  host                 local device\n");
        for (int r = 0; r < d->world; r++)
            printf("%.*s\n", ROW, all + (size_t)r * ROW);
        free(all);
    }
    return 0;
}

int cae_dist_sum(const cae_dist *d, double *v, int n)
{
    if (d->world == 1)
        return 0;
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, d->comm));
    return 0;
}

/* FNV-1a over the bytes of every buffer of the arena */
static int arena_checksum(cae_ctx *ctx, const cae_param_table *t, const cae_arena *a, uint64_t *out)
{
    uint64_t h = CAE_DIGEST_INIT;
    for (int c = 0; c < a->n; c++) {
        size_t n = t->chunk_elems[c] * 4;
        unsigned char *buf = malloc(n ? n : 1);
        if (!buf) {
            cae_errorf("out of host memory for the parameter checksum");
            return -1;
        }
        if (cae_read(ctx, buf, (cae_buf){a->mem[c], 0}, n) != 0) {
            free(buf);
            return -1;
        }
        h = cae_digest(h, buf, n);
        free(buf);
    }
    *out = h;
    return 0;
}

int cae_dist_check_same(const cae_dist *d, const uint64_t *v, int n, int *rank, int *item)
{
    uint64_t *all;
    *rank = *item = -1;
    if (d->world == 1)
        return 0;
    all = malloc((size_t)d->world * (size_t)n * sizeof *all);
    if (!all) {
        cae_errorf("out of host memory");
        return -1;
    }
    if (MPI_Allgather(v, n, MPI_UINT64_T, all, n, MPI_UINT64_T, d->comm) != MPI_SUCCESS) {
        free(all);
        cae_errorf("MPI_Allgather of the configuration digests failed");
        return -1;
    }
    for (int r = 1; r < d->world && *rank < 0; r++)
        for (int i = 0; i < n && *item < 0; i++)
            if (all[(size_t)r * (size_t)n + (size_t)i] != all[i]) {
                *rank = r;
                *item = i;
            }
    free(all);
    return *rank < 0 ? 0 : 1;
}

int cae_dist_check_sync(const cae_dist *d, cae_ctx *ctx, const cae_param_table *t,
                        const cae_arena *params, uint64_t step)
{
    uint64_t mine, *all = NULL;
    int bad = 0;
    if (d->world == 1)
        return 0;
    CAE_TRY(arena_checksum(ctx, t, params, &mine));
    all = malloc((size_t)d->world * sizeof *all);
    if (!all) {
        cae_errorf("out of host memory");
        return -1;
    }
    if (MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, d->comm) != MPI_SUCCESS) {
        free(all);
        cae_errorf("MPI_Allgather of the parameter checksums failed");
        return -1;
    }
    for (int r = 1; r < d->world; r++)
        bad += all[r] != all[0];
    if (bad && d->rank == 0) {
        char list[1024] = "";
        size_t used = 0;
        for (int r = 1; r < d->world && used < sizeof list - 16; r++)
            if (all[r] != all[0])
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%d", used ? "," : "", r);
        cae_errorf("at step %llu the parameters of rank(s) %s differ from rank 0's: the ranks are out "
                   "of sync", (unsigned long long)step, list);
    }
    free(all);
    return bad ? -1 : 0;
}

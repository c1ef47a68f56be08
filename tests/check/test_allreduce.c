/* test_allreduce.c: the bucketed gradient all-reduce (src/mpi/allreduce.h),
 * run under mpirun with 2 and 3 ranks by tests/shell/allreduce-mpi.sh.
 *
 * Every rank fills a gradient arena with values that depend on its rank,
 * the step, the tensor and the element; it writes them stage by stage
 * (non-blocking, from the last table entry back, like the backward pass)
 * and reports each watermark with cae_allreduce_ready, then calls
 * cae_allreduce_finish. The arena must then hold the exact average over
 * the ranks (relative error <= 1e-6) and the gaps between tensors must be
 * untouched. Every test ends by taking the worst result over the ranks, so
 * all ranks agree on a failure and the collectives stay in step.
 */
#include "mpi/allreduce.h"
#include "mpi/dist.h"
#include "tests/common/testutil.h"
#include "tests/common/tinymodel.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GAP_SENTINEL -7777.0f
#define REL_TOL 1e-6

static cae_dist the_dist;

typedef struct {
    cae_param_table t;
    cae_arena g;
    float **image; /* the values written this step (read by pending writes) */
    float **junk;  /* values before a tensor's gradient is final */
    unsigned char **covered; /* per buffer element: part of a tensor */
} grads;

enum { SMALL, SPLIT, LARGE };

/* Large messages take other MPI algorithms: a table made by hand of 17 MB
 * with odd sizes (and an empty tensor), in two buffers. */
static void large_table(cae_param_table *t)
{
    static const size_t sizes[] = {3, 2500001, 17, 0, 700001, 5, 1234567, 1};
    size_t n = sizeof sizes / sizeof *sizes;
    memset(t, 0, sizeof *t);
    t->p = calloc(n, sizeof *t->p);
    ck_assert_ptr_nonnull(t->p);
    t->cap = n;
    for (size_t i = 0; i < n; i++) {
        cae_param *p = &t->p[t->n++];
        snprintf(p->name, sizeof p->name, "large.%zu", i);
        p->ndim = 1;
        p->shape[0] = (int64_t)sizes[i];
        p->numel = sizes[i];
        p->decay = i % 2;
    }
    ck_assert_int_eq(cae_params_layout(t, (size_t)3000000 * 4), 0);
    ck_assert_int_eq(t->n_chunks, 2);
}

/* SPLIT: buffers of twice the largest tensor, so the arena takes several */
static void grads_new(grads *g, int mode)
{
    cae_config c;
    size_t limit = cae_params_chunk_limit(tu_ctx());
    int split = mode == SPLIT;
    tu_tiny_pretrain_config(&c, 24, 2, 40);
    if (split) {
        size_t largest = 0;
        ck_assert_int_eq(cae_params_build(&g->t, &c, limit), 0);
        for (size_t i = 0; i < g->t.n; i++)
            if (g->t.p[i].numel * 4 > largest)
                largest = g->t.p[i].numel * 4;
        cae_params_free(&g->t);
        limit = 2 * largest;
    }
    if (mode == LARGE)
        large_table(&g->t);
    else
        ck_assert_int_eq(cae_params_build(&g->t, &c, limit), 0);
    if (split)
        ck_assert_int_gt(g->t.n_chunks, 2);
    ck_assert_int_eq(cae_arena_alloc(tu_ctx(), &g->t, &g->g), 0);
    g->image = cae_arena_image_new(&g->t);
    g->junk = cae_arena_image_new(&g->t);
    ck_assert_ptr_nonnull(g->image);
    ck_assert_ptr_nonnull(g->junk);
    g->covered = calloc((size_t)g->t.n_chunks, sizeof *g->covered);
    ck_assert_ptr_nonnull(g->covered);
    for (int k = 0; k < g->t.n_chunks; k++) {
        g->covered[k] = calloc(g->t.chunk_elems[k] + 1, 1);
        ck_assert_ptr_nonnull(g->covered[k]);
    }
    for (size_t i = 0; i < g->t.n; i++)
        memset(g->covered[g->t.p[i].chunk] + g->t.p[i].off, 1, g->t.p[i].numel);
}

static void grads_free(grads *g)
{
    for (int k = 0; k < g->t.n_chunks; k++)
        free(g->covered[k]);
    free(g->covered);
    cae_arena_image_free(&g->t, g->image);
    cae_arena_image_free(&g->t, g->junk);
    cae_arena_free(&g->g);
    cae_params_free(&g->t);
}

/* the pattern shared by every rank; ranks differ in scale */
static double pattern(int step, size_t tensor, size_t e)
{
    return (double)((e * 7 + tensor * 13 + (size_t)step * 5) % 101) * 0.01;
}

/* magnitudes differ by rank, so the order of the sum changes its rounding */
static float rank_value(int rank, int step, size_t tensor, size_t e)
{
    return (float)((1 + 0.7 * rank * rank) * (1 + 1.2345 * pattern(step, tensor, e)) + 0.25 * step);
}

static double expected_value(int world, int step, size_t tensor, size_t e)
{
    double sum = 0;
    for (int r = 0; r < world; r++)
        sum += (double)rank_value(r, step, tensor, e);
    return sum / world;
}

/* The whole arena: gaps get the sentinel, tensors junk; the step's values
 * go into g->image for the staged writes. */
static void arena_start(grads *g, int rank, int step)
{
    for (int k = 0; k < g->t.n_chunks; k++)
        for (size_t e = 0; e < g->t.chunk_elems[k]; e++) {
            g->junk[k][e] = g->covered[k][e] ? 1e4f + (float)rank : GAP_SENTINEL;
            g->image[k][e] = GAP_SENTINEL;
        }
    for (size_t i = 0; i < g->t.n; i++) {
        const cae_param *p = &g->t.p[i];
        for (size_t e = 0; e < p->numel; e++)
            g->image[p->chunk][p->off + e] = rank_value(rank, step, i, e);
    }
    ck_assert_int_eq(cae_arena_write_image(tu_ctx(), &g->t, &g->g, g->junk), 0);
}

/* Enqueue (without waiting) the final values of tensors [lo, hi). */
static void stage_final(grads *g, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        const cae_param *p = &g->t.p[i];
        ck_assert_int_eq(clEnqueueWriteBuffer(tu_ctx()->queue, g->g.mem[p->chunk], CL_FALSE,
                                              p->off * 4, p->numel * 4,
                                              g->image[p->chunk] + p->off, 0, NULL, NULL),
                         CL_SUCCESS);
    }
}

/* Enqueue junk over a tensor already reported final: legal only in this
 * test, it shows the reads were enqueued by ready() at that point. */
static void stage_junk(grads *g, size_t i)
{
    const cae_param *p = &g->t.p[i];
    ck_assert_int_eq(clEnqueueWriteBuffer(tu_ctx()->queue, g->g.mem[p->chunk], CL_FALSE,
                                          p->off * 4, p->numel * 4, g->junk[p->chunk] + p->off, 0,
                                          NULL, NULL),
                     CL_SUCCESS);
}

/* Compare the arena with the average (tensors) and the sentinel (gaps);
 * returns the number of wrong elements, printing the first. */
static long arena_check(grads *g, int world, int step, const char *what)
{
    float **got = cae_arena_image_new(&g->t);
    long bad = 0;
    ck_assert_ptr_nonnull(got);
    ck_assert_int_eq(cae_finish(tu_ctx()), 0);
    ck_assert_int_eq(cae_arena_read_image(tu_ctx(), &g->t, &g->g, got), 0);
    for (int k = 0; k < g->t.n_chunks; k++)
        for (size_t e = 0; e < g->t.chunk_elems[k]; e++)
            if (!g->covered[k][e] && memcmp(&got[k][e], &(float){GAP_SENTINEL}, 4) != 0) {
                if (bad++ == 0)
                    fprintf(stderr, "%s: gap element %zu of buffer %d changed to %g\n", what, e, k,
                            (double)got[k][e]);
            }
    /* identical bits on every rank, or the replicas drift apart */
    for (int k = 0; k < g->t.n_chunks; k++) {
        float *root = malloc((g->t.chunk_elems[k] + 1) * sizeof *root);
        ck_assert_ptr_nonnull(root);
        memcpy(root, got[k], g->t.chunk_elems[k] * sizeof *root);
        ck_assert_int_eq(MPI_Bcast(root, (int)g->t.chunk_elems[k], MPI_FLOAT, 0, MPI_COMM_WORLD),
                         MPI_SUCCESS);
        if (world > 1 && memcmp(root, got[k], g->t.chunk_elems[k] * sizeof *root) != 0) {
            if (bad++ == 0)
                fprintf(stderr, "%s: rank %d's buffer %d differs from rank 0's\n", what,
                        the_dist.rank, k);
        }
        free(root);
    }
    for (size_t i = 0; i < g->t.n; i++) {
        const cae_param *p = &g->t.p[i];
        for (size_t e = 0; e < p->numel; e++) {
            double want = expected_value(world, step, i, e);
            double v = got[p->chunk][p->off + e];
            if (!(fabs(v - want) <= REL_TOL * fabs(want))) {
                if (bad++ == 0)
                    fprintf(stderr, "%s: %s[%zu] = %.9g, want %.9g\n", what, p->name, e, v, want);
            }
        }
    }
    cae_arena_image_free(&g->t, got);
    return bad;
}

static long worst_over_ranks(long bad)
{
    long worst = 0;
    ck_assert_int_eq(MPI_Allreduce(&bad, &worst, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD),
                     MPI_SUCCESS);
    return worst;
}

/* The header's rule: from the last tensor back, a bucket takes tensors
 * while it stays within bucket_bytes; a bigger tensor is a bucket alone. */
static int expected_buckets(const grads *g, size_t bucket_bytes)
{
    int count = 0;
    size_t fill = 0;
    for (size_t i = g->t.n; i-- > 0;) {
        size_t bytes = g->t.p[i].numel * 4;
        if (bytes == 0)
            continue;
        if (count == 0 || fill + bytes > bucket_bytes) {
            count++;
            fill = 0;
        }
        fill += bytes;
    }
    return count;
}

static void check_stats(const cae_allreduce *r, const grads *g)
{
    const cae_allreduce_stats *s = cae_allreduce_last(r);
    size_t bytes = 0;
    for (size_t i = 0; i < g->t.n; i++)
        bytes += g->t.p[i].numel * 4;
    ck_assert_uint_eq(s->bytes, bytes);
    ck_assert_int_ge(s->buckets, 1);
    ck_assert(s->comm_ms >= 0 && s->hidden_ms >= 0 && s->hidden_ms <= s->comm_ms);
    ck_assert(s->exposed_ms >= 0 && s->exposed_ms <= s->finish_ms);
}

/* Two steps on one all-reduce (the staging reused): step 0 reports
 * watermarks 3n/4 (twice), n/3, 0 (then writes junk over the first and
 * last tensors: the reads came first, the write-back must replace it);
 * step 1 reports n and n/2 only and leaves the rest to finish. */
static long two_steps(grads *g, size_t bucket_bytes)
{
    cae_allreduce *r = NULL;
    size_t n = g->t.n;
    long bad = 0;
    char what[128];
    ck_assert_int_eq(cae_allreduce_new(&r, tu_ctx(), &g->t, &g->g, the_dist.comm, bucket_bytes), 0);
    ck_assert_int_eq(cae_allreduce_last(r)->buckets, expected_buckets(g, bucket_bytes));

    arena_start(g, the_dist.rank, 0);
    stage_final(g, 3 * n / 4, n);
    ck_assert_int_eq(cae_allreduce_ready(r, 3 * n / 4), 0);
    ck_assert_int_eq(cae_allreduce_ready(r, 3 * n / 4), 0);
    stage_final(g, n / 3, 3 * n / 4);
    ck_assert_int_eq(cae_allreduce_ready(r, n / 3), 0);
    stage_final(g, 0, n / 3);
    ck_assert_int_eq(cae_allreduce_ready(r, 0), 0);
    /* every read is enqueued now, ahead of these */
    stage_junk(g, n - 1);
    stage_junk(g, 0);
    ck_assert_int_eq(cae_allreduce_finish(r), 0);
    check_stats(r, g);
    snprintf(what, sizeof what, "bucket %zu, %d buffers, step 0", bucket_bytes, g->t.n_chunks);
    bad += arena_check(g, the_dist.world, 0, what);

    arena_start(g, the_dist.rank, 1);
    ck_assert_int_eq(cae_allreduce_ready(r, n), 0);
    stage_final(g, n / 2, n);
    ck_assert_int_eq(cae_allreduce_ready(r, n / 2), 0);
    stage_final(g, 0, n / 2);
    ck_assert_int_eq(cae_allreduce_finish(r), 0);
    check_stats(r, g);
    snprintf(what, sizeof what, "bucket %zu, %d buffers, step 1", bucket_bytes, g->t.n_chunks);
    bad += arena_check(g, the_dist.world, 1, what);
    cae_allreduce_free(r);
    return bad;
}

static const size_t bucket_sizes[] = {64, 1000, 16384, (size_t)1 << 20};

START_TEST(test_average_one_buffer)
{
    grads g;
    long bad = 0;
    grads_new(&g, SMALL);
    ck_assert_int_eq(g.t.n_chunks, 1);
    for (size_t b = 0; b < sizeof bucket_sizes / sizeof *bucket_sizes; b++)
        bad += two_steps(&g, bucket_sizes[b]);
    grads_free(&g);
    ck_assert_int_eq(worst_over_ranks(bad), 0);
}
END_TEST

START_TEST(test_average_split_arena)
{
    grads g;
    long bad = 0;
    grads_new(&g, SPLIT);
    for (size_t b = 0; b < sizeof bucket_sizes / sizeof *bucket_sizes; b++)
        bad += two_steps(&g, bucket_sizes[b]);
    grads_free(&g);
    ck_assert_int_eq(worst_over_ranks(bad), 0);
}
END_TEST

START_TEST(test_average_large)
{
    static const size_t sizes[] = {1000, (size_t)1 << 20, (size_t)8 << 20};
    grads g;
    long bad = 0;
    grads_new(&g, LARGE);
    for (size_t b = 0; b < sizeof sizes / sizeof *sizes; b++)
        bad += two_steps(&g, sizes[b]);
    grads_free(&g);
    ck_assert_int_eq(worst_over_ranks(bad), 0);
}
END_TEST

/* finish alone (no hook) reduces everything; three steps in a row */
START_TEST(test_finish_without_ready)
{
    grads g;
    cae_allreduce *r;
    long bad = 0;
    grads_new(&g, SPLIT);
    ck_assert_int_eq(cae_allreduce_new(&r, tu_ctx(), &g.t, &g.g, the_dist.comm, 3000), 0);
    for (int step = 2; step < 5; step++) {
        arena_start(&g, the_dist.rank, step);
        stage_final(&g, 0, g.t.n);
        ck_assert_int_eq(cae_allreduce_finish(r), 0);
        bad += arena_check(&g, the_dist.world, step, "finish without ready");
    }
    cae_allreduce_free(r);
    grads_free(&g);
    ck_assert_int_eq(worst_over_ranks(bad), 0);
}
END_TEST

/* 4-byte buckets: one per tensor; a huge bucket: one in all */
START_TEST(test_bucket_counts)
{
    grads g;
    cae_allreduce *r;
    int tensors = 0;
    long bad = 0;
    grads_new(&g, SMALL);
    for (size_t i = 0; i < g.t.n; i++)
        tensors += g.t.p[i].numel > 0;
    ck_assert_int_eq(cae_allreduce_new(&r, tu_ctx(), &g.t, &g.g, the_dist.comm, 4), 0);
    ck_assert_int_eq(cae_allreduce_last(r)->buckets, tensors);
    arena_start(&g, the_dist.rank, 7);
    stage_final(&g, 0, g.t.n);
    /* a bucket per tensor: each is read as soon as it is reported */
    for (size_t w = g.t.n; w-- > 0;) {
        ck_assert_int_eq(cae_allreduce_ready(r, w), 0);
        stage_junk(&g, w);
    }
    ck_assert_int_eq(cae_allreduce_finish(r), 0);
    bad += arena_check(&g, the_dist.world, 7, "4-byte buckets");
    cae_allreduce_free(r);
    ck_assert_int_eq(cae_allreduce_new(&r, tu_ctx(), &g.t, &g.g, the_dist.comm, (size_t)1 << 30), 0);
    ck_assert_int_eq(cae_allreduce_last(r)->buckets, 1);
    arena_start(&g, the_dist.rank, 8);
    stage_final(&g, 0, g.t.n);
    ck_assert_int_eq(cae_allreduce_ready(r, 1), 0); /* not yet complete */
    ck_assert_int_eq(cae_allreduce_finish(r), 0);
    check_stats(r, &g);
    bad += arena_check(&g, the_dist.world, 8, "one bucket");
    cae_allreduce_free(r);
    grads_free(&g);
    ck_assert_int_eq(worst_over_ranks(bad), 0);
}
END_TEST

/* A world of one (MPI_COMM_SELF) leaves the arena exactly as it was. */
START_TEST(test_world_of_one)
{
    grads g;
    cae_allreduce *r;
    long bad;
    grads_new(&g, SPLIT);
    ck_assert_int_eq(cae_allreduce_new(&r, tu_ctx(), &g.t, &g.g, MPI_COMM_SELF, 64), 0);
    ck_assert_int_eq(cae_allreduce_last(r)->buckets, 0);
    arena_start(&g, 0, 3); /* rank 0's values are the average of a world of one */
    stage_final(&g, 0, g.t.n);
    ck_assert_int_eq(cae_allreduce_ready(r, g.t.n / 2), 0);
    ck_assert_int_eq(cae_allreduce_ready(r, 0), 0);
    ck_assert_int_eq(cae_allreduce_finish(r), 0);
    bad = arena_check(&g, 1, 3, "world of one");
    cae_allreduce_free(r);
    grads_free(&g);
    ck_assert_int_eq(worst_over_ranks(bad), 0);
}
END_TEST

START_TEST(test_bad_arguments)
{
    grads g;
    cae_allreduce *r = (cae_allreduce *)&g;
    cae_arena fewer;
    grads_new(&g, SPLIT);
    ck_assert_int_eq(cae_allreduce_new(&r, tu_ctx(), &g.t, &g.g, the_dist.comm, 3), -1);
    ck_assert_ptr_null(r);
    fewer = g.g;
    fewer.n = g.g.n - 1;
    ck_assert_int_eq(cae_allreduce_new(&r, tu_ctx(), &g.t, &fewer, the_dist.comm, 64), -1);
    ck_assert_ptr_null(r);
    grads_free(&g);
}
END_TEST

static Suite *allreduce_suite(void)
{
    Suite *s = suite_create("allreduce");
    TCase *tc = tu_tcase(s, "allreduce", 300);
    TU_ADD_TESTS(tc, test_average_one_buffer, test_average_split_arena, test_average_large,
                 test_finish_without_ready, test_bucket_counts, test_world_of_one,
                 test_bad_arguments);
    return s;
}

int main(int argc, char **argv)
{
    int failed, worst = 0;

    if (cae_dist_init(&the_dist, &argc, &argv) != 0)
        return 1;
    /* an OpenCL context and MPI both forbid forking the tests */
    setenv("CK_FORK", "no", 1);
    failed = tu_run(allreduce_suite());
    if (MPI_Allreduce(&failed, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        worst = 1;
    if (failed)
        fprintf(stderr, "rank %d: %d test(s) failed\n", the_dist.rank, failed);
    cae_dist_finalize(&the_dist);
    return worst == 0 ? 0 : 1;
}

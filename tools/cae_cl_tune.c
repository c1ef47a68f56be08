/* cae-cl-tune: tunes CLBlast's GEMM kernels and our own kernels' tunables
 * for the GEMM shapes and tensor sizes of one training step, and writes the
 * best per device and driver to the tuning file (tune_file.h), which every
 * program's cae_ctx_init then applies.
 *
 * CLBlast's own tuner is C++ only, so candidates are set through
 * CLBlastOverrideParameters and timed through the same cae_gemm calls the
 * step makes. Per candidate: one compile (a small warm-up product), then
 * each distinct step shape once; the score is the step's estimated GEMM
 * time, sum(count * time); a candidate is dropped as soon as its partial
 * sum passes the best so far. Xgemm candidates run with every product
 * forced onto the indirect kernel, XgemmDirect candidates with every
 * product forced onto the direct one; then the indirect-size threshold
 * (GemmRoutine XGEMM_MIN_INDIRECT_SIZE) that minimises the step time is
 * chosen from the two sets of times, and the result is measured once more.
 *
 * Tuning never loses: before any candidate, two references are timed the
 * same way (every shape once after an untimed run of it): CLBlast's own
 * database parameters for the device (no override; the context starts on
 * the host back end where it can, so no CPU default has been applied yet)
 * and the parameters programs use now (the tuning file's sets, else the
 * defaults cae_gemm_init applies). The set found is written only when it
 * measured faster than both; otherwise the parameters in use are written
 * unchanged (the database instead, as a file without CLBlast sets, where it
 * was faster and programs fall back to it, i.e. without CPU defaults). With
 * --discrete_vae_weight_path the tokenizer's GEMMs count in every score.
 * On CPU devices with native kernels the host BLAS is measured too.
 *
 * Our kernels: cae_launch_1d's work-group size (runtime) and the -D vector
 * switches GELU_VEC and LAYERNORM_VEC (one program build each), timed on
 * the step's LayerNorm, GELU and softmax sizes.
 */
#include "train/args.h"
#include "runtime/errors.h"
#include "runtime/gemm.h"
#include "model/gemm_shapes.h"
#include "ops/ops.h"
#include "train/train_log.h"
#include "runtime/tune_file.h"
#include "runtime/device.h"
#include "tune_candidates.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHAPES 128
#define MAX_CAND 256
#define NO_TIME 1e30
#define MIN_INDIRECT_NEVER ((size_t)1 << 20) /* its cube passes any product */

static const char *const routine_names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
static const char *const groups[] = {"linear fwd", "linear dx", "linear dW", "attention",
                                     "tokenizer"};
#define N_GROUPS (sizeof groups / sizeof groups[0])

typedef struct {
    cae_ctx ctx;
    cae_args a;
    cae_gemm_shape shapes[MAX_SHAPES];
    size_t n_shapes;
    cl_mem mem[3];
    double t0, budget_ms;
    /* the references (gemm_references): the parameters in use, CLBlast's
     * database, the host BLAS; ms per shape */
    cae_tune in_use; /* its CLBlast sets: the tuning file's, none for the defaults */
    const char *in_use_what;
    double used[MAX_SHAPES], database[MAX_SHAPES], host[MAX_SHAPES];
    int have_database, have_host;
} tuner;

/* ------------------------------------------------------------ candidates
 * (the sets themselves: tune_candidates.c) */

static void print_set(FILE *f, const char *const *names, const size_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s=%zu", i ? " " : "", names[i], v[i]);
}

/* One candidate's outcome (v: ms, NO_TIME when dropped as slower, negative
 * when refused; t0: when its try began): a line on stdout and an entry in
 * the report's candidates. */
static void report_candidate(json_t *cands, const char *kernel, size_t i,
                             const char *const *names, const size_t *set, size_t n, double v,
                             double t0)
{
    json_t *c = json_object();
    printf("  %-6s %2zu: ", strcmp(kernel, "Xgemm") == 0 ? "Xgemm" : "Direct", i);
    print_set(stdout, names, set, n);
    if (v < 0)
        printf(": refused by CLBlast or the device\n");
    else if (v >= NO_TIME)
        printf(": slower, dropped (%.0f s)\n", (cae_now_ms() - t0) * 1e-3);
    else
        printf(": %.1f ms (%.0f s with the compile)\n", v, (cae_now_ms() - t0) * 1e-3);
    json_object_set_new(c, "kernel", json_string(kernel));
    json_object_set_new(c, "index", json_integer((json_int_t)i));
    json_object_set_new(c, "step_gemm_ms", v < 0 || v >= NO_TIME ? json_null() : json_real(v));
    json_array_append_new(cands, c);
}

/* ------------------------------------------------------------ timing */

static int run_shape(tuner *t, const cae_gemm_shape *s)
{
    cae_buf A = {t->mem[0], 0}, B = {t->mem[1], 0}, C = {t->mem[2], 0};
    size_t lda = s->trans_a ? s->m : s->k, ldb = s->trans_b ? s->k : s->n;
    if (s->batch == 1)
        return cae_gemm(&t->ctx, s->trans_a, s->trans_b, s->m, s->n, s->k, 1.0f, A, lda, B, ldb,
                        0.0f, C, s->n);
    return cae_gemm_batched(&t->ctx, s->trans_a, s->trans_b, s->m, s->n, s->k, 1.0f, A, lda,
                            s->m * s->k, B, ldb, s->k * s->n, 0.0f, C, s->n, s->m * s->n,
                            s->batch);
}

/* Drivers such as PoCL compile each kernel on its first launch, and CLBlast
 * builds a program per parameter set: untimed products of every
 * transposition, plain and batched, small and large (either side of any
 * direct/indirect threshold in 65..512), multiples of 64 and not (CLBlast's
 * copy and pad kernels), compile what the step's shapes will use. */
#define WARM_MAX 513
static int warm_up(tuner *t)
{
    static const size_t sizes[] = {64, 65, 512, WARM_MAX};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t batch = 1; batch <= 2; batch++)
                for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
                    cae_gemm_shape s = {sizes[i], sizes[i], sizes[i], batch, ta, tb, 1, ""};
                    if (run_shape(t, &s) != 0)
                        return -1;
                }
    return cae_finish(&t->ctx);
}

/* Time every shape once (ms per call, into ms[]); with warm_each, after an
 * untimed run of the same shape (thresholds outside warm_up's range), else
 * after warm_up. Stops early, returning NO_TIME, once the weighted sum
 * passes `give_up`. Returns the weighted sum (estimated step ms), or -1
 * when CLBlast refused the set. */
static double time_shapes(tuner *t, double *ms, double give_up, int warm_each)
{
    double total = 0;
    for (size_t i = 0; i < t->n_shapes; i++)
        ms[i] = NO_TIME;
    if (!warm_each && warm_up(t) != 0)
        return -1;
    for (size_t i = 0; i < t->n_shapes; i++) {
        double t0;
        if (warm_each && (run_shape(t, &t->shapes[i]) != 0 || cae_finish(&t->ctx) != 0))
            return -1;
        t0 = cae_now_ms();
        if (run_shape(t, &t->shapes[i]) != 0 || cae_finish(&t->ctx) != 0)
            return -1;
        ms[i] = cae_now_ms() - t0;
        total += ms[i] * (double)t->shapes[i].count;
        if (total > give_up)
            return NO_TIME;
    }
    return total;
}

/* past this share of the budget (Xgemm candidates stop at 2/3, leaving
 * the rest to XgemmDirect) */
static int over_budget(const tuner *t, double share)
{
    return cae_now_ms() - t->t0 > share * t->budget_ms;
}

static double group_rate(const tuner *t, const double *ms, const char *group)
{
    double fl = 0, time = 0;
    for (size_t i = 0; i < t->n_shapes; i++)
        if (strcmp(t->shapes[i].group, group) == 0) {
            fl += cae_gemm_shape_flops(&t->shapes[i]);
            time += ms[i] * (double)t->shapes[i].count;
        }
    return time > 0 ? fl / (time * 1e-3) * 1e-9 : 0;
}

static size_t count_group(const tuner *t, const char *group)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_shapes; i++)
        n += strcmp(t->shapes[i].group, group) == 0;
    return n;
}

static double step_ms(const tuner *t, const double *ms)
{
    double sum = 0;
    for (size_t i = 0; i < t->n_shapes; i++)
        sum += ms[i] * (double)t->shapes[i].count;
    return sum;
}

static json_t *rates_json(const tuner *t, const double *ms)
{
    json_t *o = json_object();
    for (size_t g = 0; o && g < N_GROUPS; g++)
        json_object_set_new(o, groups[g], json_real(group_rate(t, ms, groups[g])));
    if (o)
        json_object_set_new(o, "step_gemm_ms", json_real(step_ms(t, ms)));
    return o;
}

static void print_rates(const tuner *t, const char *what, const double *ms)
{
    printf("  %-26s", what);
    for (size_t g = 0; g < N_GROUPS; g++)
        if (count_group(t, groups[g]))
            printf(" %10.1f", group_rate(t, ms, groups[g]));
    printf(" %10.1f\n", step_ms(t, ms));
}

/* ------------------------------------------------------------ GEMM search */

static int force_indirect(tuner *t, size_t min_indirect)
{
    return cae_gemm_override(t->ctx.device, "GemmRoutine", routine_names, &min_indirect, 1);
}

/* The step time with products below min^3 (m*n*k) on the direct kernel. */
static double combined_ms(const tuner *t, const double *ind, const double *dir, size_t min,
                          double *out)
{
    double sum = 0;
    for (size_t i = 0; i < t->n_shapes; i++) {
        const cae_gemm_shape *s = &t->shapes[i];
        double mnk = (double)s->m * (double)s->n * (double)s->k;
        out[i] = mnk < (double)min * (double)min * (double)min ? dir[i] : ind[i];
        sum += out[i] * (double)s->count;
    }
    return sum;
}

/* Every shape timed the way the references and the final choice are
 * (each after an untimed run of it), with a line naming what; 0 or -1. */
static int time_reference(tuner *t, double *ms, const char *what)
{
    double v = time_shapes(t, ms, NO_TIME, 1);
    if (v < 0) {
        cae_errorf("the GEMMs fail on %s with %s", t->ctx.device_name, what);
        return -1;
    }
    printf("  %-44s %10.1f ms\n", what, v);
    fflush(stdout);
    return 0;
}

/* The references, before any candidate is set: the host BLAS (the
 * context's back end on native-kernel devices), CLBlast's database
 * parameters (cae_gemm_init overrides nothing without a tuning set or CPU
 * defaults; where the context had to start on CLBlast with the CPU
 * defaults they are gone), then the parameters in use (the file at path,
 * else the defaults), applied as every program's cae_gemm_init does. */
static int gemm_references(tuner *t, const cae_tune_device *dev, const char *path)
{
    int cpu = t->ctx.cpu_defaults, rc;
    printf("\nGEMM: %zu distinct shapes per step; times in ms for the step's products\n",
           t->n_shapes);
    if (t->ctx.native_kernels) {
        CAE_TRY(time_reference(t, t->host, "host BLAS"));
        t->have_host = 1;
    }
    if (t->ctx.native_kernels || !cpu) {
        CAE_TRY(cae_gemm_init_database(&t->ctx));
        CAE_TRY(time_reference(t, t->database, "CLBlast's database (no override)"));
        t->have_database = 1;
    } else {
        printf("  CLBlast's database: not timed (the CPU defaults were applied at start)\n");
    }
    if (cae_tune_load(path, dev, &t->in_use) == 1 &&
        (t->in_use.have_xgemm || t->in_use.have_direct || t->in_use.have_min_indirect))
        t->in_use_what = "in use (the tuning file's sets)";
    else
        t->in_use_what = cpu ? "in use (the CPU defaults)" : "in use (CLBlast's database)";
    t->ctx.tune = t->in_use;
    rc = cae_gemm_init(&t->ctx, CAE_GEMM_CLBLAST);
    memset(&t->ctx.tune, 0, sizeof t->ctx.tune);
    CAE_TRY(rc);
    return time_reference(t, t->used, t->in_use_what);
}

/* Xgemm candidates xc[0..nx) on every product (all indirect) within two
 * thirds of the budget: the fastest into best->xgemm (have_xgemm stays 0
 * when none ran), its times into best_ind. */
static int search_xgemm(tuner *t, size_t (*xc)[CAE_TUNE_XGEMM_N], size_t nx, cae_tune *best,
                        double *best_ind, json_t *cands, size_t *tried)
{
    double cur[MAX_SHAPES], best_x = NO_TIME, v;
    CAE_TRY(force_indirect(t, 0));
    for (size_t i = 0; i < nx && !over_budget(t, 2.0 / 3.0); i++, (*tried)++) {
        double t0 = cae_now_ms();
        CAE_TRY(cae_gemm_override(t->ctx.device, "Xgemm", cae_tune_xgemm_names, xc[i],
                                  CAE_TUNE_XGEMM_N));
        v = time_shapes(t, cur, best_x, 0);
        report_candidate(cands, "Xgemm", i, cae_tune_xgemm_names, xc[i], CAE_TUNE_XGEMM_N, v,
                         t0);
        if (v >= 0 && v < best_x) {
            best_x = v;
            memcpy(best->xgemm, xc[i], sizeof best->xgemm);
            memcpy(best_ind, cur, sizeof cur);
        }
        fflush(stdout);
    }
    if (best_x >= NO_TIME) {
        printf("  no Xgemm candidate ran\n");
        return 0;
    }
    best->have_xgemm = 1;
    return cae_gemm_override(t->ctx.device, "Xgemm", cae_tune_xgemm_names, best->xgemm,
                             CAE_TUNE_XGEMM_N);
}

/* XgemmDirect candidates dc[0..nd) on every product (all direct) within the
 * rest of the budget: the fastest into best->direct, its times into
 * best_dir; its total (NO_TIME when none ran). */
static double search_direct(tuner *t, size_t (*dc)[CAE_TUNE_DIRECT_N], size_t nd, cae_tune *best,
                            double *best_dir, json_t *cands, size_t *tried)
{
    double cur[MAX_SHAPES], best_d = NO_TIME, v;
    if (force_indirect(t, MIN_INDIRECT_NEVER) != 0)
        return -1;
    for (size_t i = 0; i < nd && !over_budget(t, 1.0); i++, (*tried)++) {
        double t0 = cae_now_ms();
        if (cae_gemm_override(t->ctx.device, "XgemmDirect", cae_tune_direct_names, dc[i],
                              CAE_TUNE_DIRECT_N) != 0)
            return -1;
        /* worth keeping while it wins some shapes: give up at twice the best */
        v = time_shapes(t, cur, best_d < NO_TIME ? 2 * best_d : NO_TIME, 0);
        report_candidate(cands, "XgemmDirect", i, cae_tune_direct_names, dc[i],
                         CAE_TUNE_DIRECT_N, v, t0);
        if (v >= 0 && v < best_d) {
            best_d = v;
            memcpy(best->direct, dc[i], sizeof best->direct);
            memcpy(best_dir, cur, sizeof cur);
        }
        fflush(stdout);
    }
    return best_d;
}

/* The threshold: every shape's cube root boundary, or 0 (all indirect);
 * then the choice set on the device. */
static int choose_min_indirect(tuner *t, cae_tune *best, const double *best_ind,
                               const double *best_dir, int have_direct, double *chosen)
{
    size_t best_min = 0;
    best->have_min_indirect = 1;
    best->min_indirect = 0;
    if (have_direct) {
        double best_sum = combined_ms(t, best_ind, best_dir, 0, chosen);
        best->have_direct = 1;
        for (size_t i = 0; i < t->n_shapes; i++) {
            const cae_gemm_shape *s = &t->shapes[i];
            size_t min = (size_t)cbrt((double)s->m * (double)s->n * (double)s->k) + 1;
            double sum = combined_ms(t, best_ind, best_dir, min, chosen);
            if (sum < best_sum) {
                best_sum = sum;
                best_min = min;
            }
        }
        best->min_indirect = best_min;
    }
    if (best->have_direct)
        CAE_TRY(cae_gemm_override(t->ctx.device, "XgemmDirect", cae_tune_direct_names,
                                  best->direct, CAE_TUNE_DIRECT_N));
    return force_indirect(t, best->min_indirect);
}

/* The CLBlast sets of from into to (the kernels' tunables stay). */
static void set_clblast(cae_tune *to, const cae_tune *from)
{
    to->have_xgemm = from->have_xgemm;
    to->have_direct = from->have_direct;
    to->have_min_indirect = from->have_min_indirect;
    memcpy(to->xgemm, from->xgemm, sizeof to->xgemm);
    memcpy(to->direct, from->direct, sizeof to->direct);
    to->min_indirect = from->min_indirect;
}

/* What the file gets (into best): the set found (found: its times, NULL
 * when none ran) only when it measured faster than every reference that a
 * file can hold; else the parameters in use, unchanged, or CLBlast's
 * database (no CLBlast sets in the file) where it measured faster and
 * programs fall back to it (no CPU defaults). The comparison on stdout. */
static void choose_written(tuner *t, cae_tune *best, const double *found, json_t *report)
{
    double used = step_ms(t, t->used), db = t->have_database ? step_ms(t, t->database) : NO_TIME;
    double found_ms = found ? step_ms(t, found) : NO_TIME;
    int db_wins = t->have_database && !t->ctx.cpu_defaults && db < used;
    double ref = db_wins ? db : used;
    const char *written;

    printf("\nCLBlast, ms for the step's GEMMs:\n  %-44s %10.1f\n", t->in_use_what, used);
    if (t->have_database)
        printf("  %-44s %10.1f\n", "CLBlast's database", db);
    if (found)
        printf("  %-44s %10.1f\n", "best found", found_ms);
    else
        printf("  %-44s %10s\n", "best found", "none");
    if (found_ms < ref) {
        written = "best found";
        printf("writing the best found: %.1f ms against %.1f\n", found_ms, ref);
    } else if (db_wins) {
        cae_tune none;
        memset(&none, 0, sizeof none);
        set_clblast(best, &none);
        written = "database";
        printf("no candidate beat CLBlast's database (%.1f ms): writing no CLBlast sets, so "
               "programs keep it\n", db);
    } else {
        set_clblast(best, &t->in_use);
        written = "in use";
        printf("no candidate beat the parameters in use (%.1f ms): writing them unchanged\n", used);
    }
    if (t->have_database && db < ref && db < found_ms)
        printf("note: CLBlast's database measured fastest (%.1f ms), but programs apply the CPU "
               "defaults where a file has no CLBlast sets, so it cannot be written\n", db);
    json_object_set_new(report, "written", json_string(written));
}

/* The set found and the rates of each way of running the products, on
 * stdout and into report. */
static void report_gemm(tuner *t, const cae_tune *best, const double *found, json_t *report)
{
    if (found) {
        printf("\nbest found: Xgemm ");
        print_set(stdout, cae_tune_xgemm_names, best->xgemm, CAE_TUNE_XGEMM_N);
        if (best->have_direct) {
            printf("\n        XgemmDirect ");
            print_set(stdout, cae_tune_direct_names, best->direct, CAE_TUNE_DIRECT_N);
        }
        printf("\n        XGEMM_MIN_INDIRECT_SIZE=%zu (products with m*n*k below its cube run "
               "direct)\n", best->min_indirect);
    }
    printf("\nGFLOP/s per shape group:\n  %-26s", "");
    for (size_t g = 0; g < N_GROUPS; g++)
        if (count_group(t, groups[g]))
            printf(" %10s", groups[g]);
    printf(" %10s\n", "step ms");
    print_rates(t, "CLBlast in use", t->used);
    json_object_set_new(report, "clblast_in_use", rates_json(t, t->used));
    if (t->have_database) {
        print_rates(t, "CLBlast database", t->database);
        json_object_set_new(report, "clblast_database", rates_json(t, t->database));
    }
    if (found) {
        print_rates(t, "CLBlast tuned", found);
        json_object_set_new(report, "clblast_tuned", rates_json(t, found));
    }
    if (t->have_host) {
        print_rates(t, "host BLAS", t->host);
        json_object_set_new(report, "host_blas", rates_json(t, t->host));
    }
}

static int search_gemm(tuner *t, cae_tune *best, json_t *report)
{
    static size_t xc[MAX_CAND][CAE_TUNE_XGEMM_N], dc[MAX_CAND][CAE_TUNE_DIRECT_N];
    double best_ind[MAX_SHAPES], best_dir[MAX_SHAPES], chosen[MAX_SHAPES];
    double best_d;
    size_t cap = t->a.max_candidates > 0 ? (size_t)t->a.max_candidates : 1, nx, nd, tried = 0;
    size_t x_share;
    json_t *cands = json_array();

    if (cap > MAX_CAND)
        cap = MAX_CAND;
    /* direct candidates get a third of the tries (at least one) */
    x_share = cap > 1 ? cap - cap / 3 : 1;
    nx = cae_tune_xgemm_candidates(&t->ctx, &t->in_use, xc, x_share);
    nd = cae_tune_direct_candidates(&t->ctx, &t->in_use, dc, cap > x_share ? cap - x_share : 0);

    printf("\ncandidates:\n");
    json_object_set_new(report, "candidates", cands);
    CAE_TRY(search_xgemm(t, xc, nx, best, best_ind, cands, &tried));
    if (best->have_xgemm) {
        best_d = search_direct(t, dc, nd, best, best_dir, cands, &tried);
        if (best_d < 0)
            return -1;
        CAE_TRY(choose_min_indirect(t, best, best_ind, best_dir, best_d < NO_TIME, chosen));
        /* the choice, measured as the references were */
        if (time_shapes(t, chosen, NO_TIME, 1) < 0)
            return -1;
    }
    if (over_budget(t, 1.0) || tried < nx + nd)
        printf("  budget of %g s spent after %zu of %zu candidates\n", t->a.budget_s, tried,
               nx + nd);
    report_gemm(t, best, best->have_xgemm ? chosen : NULL, report);
    choose_written(t, best, best->have_xgemm ? chosen : NULL, report);
    return 0;
}

/* ------------------------------------------------------------ our kernels */

typedef struct {
    size_t T, C, n_gelu, R, K;
} kernel_sizes;

#define CLEARLY 0.95 /* a variant replaces the default only when 5% faster */

/* best of five runs of LayerNorm, GELU and softmax forward and backward
 * over the step's largest sizes, in ms */
static double time_kernels(cae_ctx *ctx, const kernel_sizes *z)
{
    size_t big = z->T * z->C;
    cl_mem m[6] = {NULL};
    double best = NO_TIME;
    if (z->n_gelu > big)
        big = z->n_gelu;
    if (z->R * z->K > big)
        big = z->R * z->K;
    for (int i = 0; i < 6; i++)
        if (cae_alloc(ctx, big * 4, &m[i]) != 0 || cae_fill_float(ctx, (cae_buf){m[i], 0}, 0.25f * (float)(i + 1), big) != 0)
            goto out;
    for (int rep = 0; rep < 6; rep++) {
        cae_buf x = {m[0], 0}, y = {m[1], 0}, dy = {m[2], 0}, dx = {m[3], 0};
        cae_buf stat = {m[4], 0}, stat2 = {m[4], z->T}, w = {m[5], 0}, b = {m[5], z->C};
        cae_buf dw = {m[5], 2 * z->C}, db = {m[5], 3 * z->C};
        double t0;
        if (cae_finish(ctx) != 0)
            goto out;
        t0 = cae_now_ms();
        if (cae_layernorm_forward(ctx, y, stat, stat2, x, w, b, z->T, z->C) != 0 ||
            cae_layernorm_backward(ctx, dx, dw, db, dy, x, w, stat, stat2, z->T, z->C,
                                   CAE_OVERWRITE) != 0 ||
            cae_gelu_forward(ctx, y, x, z->n_gelu) != 0 ||
            cae_gelu_backward(ctx, dx, dy, x, z->n_gelu) != 0 ||
            cae_softmax_forward(ctx, y, x, z->R, z->K) != 0 ||
            cae_softmax_backward(ctx, dx, dy, y, z->R, z->K) != 0 || cae_finish(ctx) != 0)
            goto out;
        if (rep > 0 && cae_now_ms() - t0 < best)
            best = cae_now_ms() - t0;
    }
out:
    for (int i = 0; i < 6; i++)
        cae_release(&m[i]);
    return best;
}

static int search_kernels(tuner *t, cae_tune *best, json_t *report)
{
    /* the default (64) first: another value must beat the best so far by
     * CLEARLY, so load noise on a shared machine does not move it */
    static const size_t wgs[] = {64, 8, 16, 32, 128, 256};
    const cae_config *c = &t->a.model;
    size_t B = (size_t)t->a.batch_size, N = (size_t)c->num_visible + 1;
    kernel_sizes z = {B * N, (size_t)c->embed_dim, B * N * (size_t)c->mlp_hidden,
                      B * (size_t)c->num_heads * N, N};
    double best_ms = NO_TIME;
    json_t *list = json_array();

    printf("\nour kernels (LayerNorm, GELU, softmax forward+backward, %zux%zu rows, %zu GELU "
           "elements), ms:\n", z.T, z.C, z.n_gelu);
    /* work-group size on the default build */
    for (size_t i = 0; i < sizeof wgs / sizeof wgs[0]; i++) {
        double ms;
        if (wgs[i] > t->ctx.max_work_group)
            continue;
        t->ctx.launch_wg = wgs[i];
        ms = time_kernels(&t->ctx, &z);
        if (ms >= NO_TIME)
            return -1;
        printf("  work_group_1d=%-4zu      %8.2f\n", wgs[i], ms);
        json_array_append_new(list, json_pack("{s:s,s:i,s:f}", "variant", "work_group_1d", "value",
                                              (int)wgs[i], "ms", ms));
        if (ms < CLEARLY * best_ms) {
            best_ms = ms;
            best->work_group_1d = wgs[i];
        }
    }
    best->have_wg = 1;
    t->ctx.launch_wg = best->work_group_1d;
    /* each vector switch off, in a context of its own (one program build) */
    for (size_t d = 0; d < CAE_TUNE_DEFINES_N; d++) {
        cae_tune variant = *best;
        cae_ctx_options opt = {.gemm = CAE_GEMM_CLBLAST, .tune = &variant};
        cae_ctx other;
        double ms;
        variant.have_define[d] = 1;
        variant.define[d] = 0;
        if (over_budget(t, 1.0 / 3.0)) {
            printf("  budget spent: %s not tried\n", cae_tune_define_names[d]);
            break;
        }
        if (cae_ctx_init(&other, &opt) != 0)
            return -1;
        ms = time_kernels(&other, &z);
        cae_ctx_free(&other);
        if (ms >= NO_TIME)
            return -1;
        printf("  %s=0%*s %8.2f\n", cae_tune_define_names[d],
               (int)(21 - strlen(cae_tune_define_names[d])), "", ms);
        json_array_append_new(list, json_pack("{s:s,s:i,s:f}", "variant", cae_tune_define_names[d],
                                              "value", 0, "ms", ms));
        best->have_define[d] = 1;
        best->define[d] = ms < CLEARLY * best_ms ? 0 : 1;
        if (best->define[d] == 0)
            best_ms = ms;
    }
    printf("chosen: work_group_1d=%zu", best->work_group_1d);
    for (size_t d = 0; d < CAE_TUNE_DEFINES_N; d++)
        if (best->have_define[d])
            printf(" %s=%d", cae_tune_define_names[d], best->define[d]);
    printf(" (%.2f ms)\n", best_ms);
    json_object_set_new(report, "kernels", list);
    return 0;
}

/* ------------------------------------------------------------ main */

/* The context, on the host back end where the device runs native kernels
 * (so that CLBlast keeps its database parameters until gemm_references has
 * timed them), the step's shapes (the tokenizer's too when its weights are
 * given) and buffers for the largest. */
static int setup(tuner *t)
{
    size_t need = 2 * WARM_MAX * WARM_MAX; /* the warm-up products */
    cae_ctx_options opt = {.gemm = CAE_GEMM_CLBLAST};
    cae_tune none;
    cae_ctx probe;
    memset(&none, 0, sizeof none);
    memset(&probe, 0, sizeof probe);
    opt.tune = &none; /* measure from the defaults, whatever file exists */
    CAE_TRY(cae_device_open(&probe, 0));
    if (probe.native_kernels)
        opt.gemm = CAE_GEMM_HOST;
    CAE_TRY(cae_ctx_init(&t->ctx, &opt));
    t->n_shapes = cae_gemm_shapes(&t->a.model, (size_t)t->a.batch_size, t->shapes, MAX_SHAPES);
    if (t->a.discrete_vae_weight_path)
        CAE_TRY(cae_gemm_shapes_tokenizer(t->a.discrete_vae_weight_path, (size_t)t->a.batch_size,
                                          t->a.second_input_size, t->ctx.max_alloc, t->shapes,
                                          MAX_SHAPES, &t->n_shapes));
    if (t->n_shapes > MAX_SHAPES) {
        cae_errorf("this configuration has %zu GEMM shapes, more than %d", t->n_shapes, MAX_SHAPES);
        return -1;
    }
    for (size_t i = 0; i < t->n_shapes; i++) {
        const cae_gemm_shape *s = &t->shapes[i];
        size_t sizes[3] = {s->m * s->k, s->k * s->n, s->m * s->n};
        for (int j = 0; j < 3; j++)
            if (sizes[j] * s->batch > need)
                need = sizes[j] * s->batch;
    }
    for (int j = 0; j < 3; j++) {
        CAE_TRY(cae_alloc(&t->ctx, need * 4, &t->mem[j]));
        CAE_TRY(cae_fill_float(&t->ctx, (cae_buf){t->mem[j], 0}, 0.01f * (float)(j + 1), need));
    }
    return 0;
}

static int tune(tuner *t)
{
    cae_tune best;
    cae_tune_device dev;
    char path[4096], desc[512];
    json_t *report = json_object();
    int rc = -1;

    memset(&best, 0, sizeof best);
    /* the tokenizer's shapes count when its weights are given */
    CAE_TRY(cae_args_choose_target(&t->a, t->a.discrete_vae_weight_path == NULL));
    CAE_TRY(cae_config_finish(&t->a.model));
    CAE_TRY(setup(t));
    CAE_TRY(cae_tune_device_query(t->ctx.device, t->ctx.platform, &dev));
    if (cae_tune_path(&dev, path, sizeof path) != 0) {
        cae_errorf("no place for the tuning file: set CAE_CL_TUNE_FILE or HOME");
        return -1;
    }
    cae_config_describe(&t->a.model, desc, sizeof desc);
    printf("device: %s (%s, driver %s)\nconfiguration: %s, batch %d\n", dev.device, dev.platform,
           dev.driver, desc, t->a.batch_size);
    if (t->a.discrete_vae_weight_path)
        printf("tokenizer: DALL-E %s at %dx%d, %zu GEMM shapes per step\n",
               t->a.discrete_vae_weight_path, t->a.second_input_size, t->a.second_input_size,
               count_group(t, "tokenizer"));
    t->t0 = cae_now_ms();
    t->budget_ms = t->a.budget_s * 1e3;
    /* the references first: the kernels' contexts apply the CPU defaults */
    if (gemm_references(t, &dev, path) != 0 || search_kernels(t, &best, report) != 0 ||
        search_gemm(t, &best, report) != 0)
        goto out;
    json_object_set_new(report, "configuration", json_string(desc));
    json_object_set_new(report, "batch_size", json_integer(t->a.batch_size));
    json_object_set_new(report, "seconds", json_real((cae_now_ms() - t->t0) * 1e-3));
    if (cae_tune_save(path, &dev, &best, report) != 0)
        goto out;
    printf("\nwrote %s\n", path);
    rc = 0;
out:
    json_decref(report);
    return rc;
}

int main(int argc, char **argv)
{
    tuner t;
    int rc;
    memset(&t, 0, sizeof t);
    if (cae_args_parse(&t.a, argc, argv) != 0)
        return 2;
    if (t.a.help) {
        cae_args_usage(stdout, "cae-cl-tune",
                       "Tunes CLBlast's GEMM kernels and cae-cl's kernel tunables for one\n"
                       "configuration's step on the chosen device and writes the tuning file\n"
                       "($CAE_CL_TUNE_FILE, else ~/.cache/cae-cl/tune/<device>.json) that every\n"
                       "cae-cl program then applies. Own flags: --budget_s, --max_candidates.\n");
        return 0;
    }
    if (t.a.list_devices)
        return cae_list_devices(stdout) == 0 ? 0 : 1;
    if (t.a.budget_s <= 0 || t.a.max_candidates < 1) {
        cae_errorf("--budget_s must be > 0 and --max_candidates >= 1");
        return 2;
    }
    rc = tune(&t);
    for (int j = 0; j < 3; j++)
        cae_release(&t.mem[j]);
    if (t.ctx.context)
        cae_ctx_free(&t.ctx);
    return rc == 0 ? 0 : 1;
}

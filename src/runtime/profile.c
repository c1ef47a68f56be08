/* profile.c: fold profiling events into a per-name table. */
#include "runtime/profile.h"

#include <stdlib.h>
#include <string.h>

void cae_profile_init(cae_profile *p)
{
    memset(p, 0, sizeof *p);
}

void cae_profile_free(cae_profile *p)
{
    free(p->rows);
    memset(p, 0, sizeof *p);
}

static cae_profile_row *row_for(cae_profile *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->rows[i].name, name) == 0)
            return &p->rows[i];
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        cae_profile_row *grown = realloc(p->rows, cap * sizeof *grown);
        if (!grown) {
            cae_errorf("out of host memory in the profile table");
            return NULL;
        }
        p->rows = grown;
        p->cap = cap;
    }
    memset(&p->rows[p->n], 0, sizeof p->rows[0]);
    snprintf(p->rows[p->n].name, sizeof p->rows[0].name, "%s", name);
    return &p->rows[p->n++];
}

int cae_profile_collect(cae_profile *p, cae_ctx *ctx)
{
    int rc = cae_finish(ctx);
    for (size_t i = 0; i < ctx->n_prof_events && rc == 0; i++) {
        const cae_prof_event *e = &ctx->prof_events[i];
        cl_ulong start = 0, end = 0;
        cae_profile_row *r;
        cl_int err = clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_START, sizeof start,
                                             &start, NULL);
        if (err == CL_SUCCESS)
            err = clGetEventProfilingInfo(e->event, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
        if (err != CL_SUCCESS) {
            cae_errorf("clGetEventProfilingInfo(%s) failed: %s (was the queue created with "
                       "profiling?)", e->name, cae_cl_error_name(err));
            rc = -1;
            break;
        }
        r = row_for(p, e->name);
        if (!r) {
            rc = -1;
            break;
        }
        r->total_ms += end > start ? (double)(end - start) * 1e-6 : 0.0;
        r->launches++;
    }
    cae_prof_clear(ctx);
    return rc;
}

static int by_time(const void *a, const void *b)
{
    double x = ((const cae_profile_row *)a)->total_ms, y = ((const cae_profile_row *)b)->total_ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

void cae_profile_sort(cae_profile *p)
{
    if (p->n > 1)
        qsort(p->rows, p->n, sizeof p->rows[0], by_time);
}

double cae_profile_total_ms(const cae_profile *p)
{
    double t = 0;
    for (size_t i = 0; i < p->n; i++)
        t += p->rows[i].total_ms;
    return t;
}

size_t cae_profile_launches(const cae_profile *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += p->rows[i].launches;
    return n;
}

void cae_profile_print(const cae_profile *p, FILE *out, size_t steps, size_t top)
{
    double total = cae_profile_total_ms(p), s = steps ? (double)steps : 1.0;
    fprintf(out, "%-36s %12s %8s %14s\n", "op", "ms/step", "share", "launches/step");
    for (size_t i = 0; i < p->n && i < top; i++)
        fprintf(out, "%-36s %12.3f %7.1f%% %14.1f\n", p->rows[i].name, p->rows[i].total_ms / s,
                total > 0 ? 100.0 * p->rows[i].total_ms / total : 0.0, (double)p->rows[i].launches / s);
    fprintf(out, "%-36s %12.3f %7.1f%% %14.1f\n", "(all ops)", total / s, 100.0,
            (double)cae_profile_launches(p) / s);
}

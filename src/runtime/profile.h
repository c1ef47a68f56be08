/* profile.h: per-op device time from OpenCL profiling events.
 *
 * With cae_ctx_options.profiling = 1 (or ctx->profiling set again after
 * init on a profiling queue), every kernel launch and GEMM keeps an event
 * named after its kernel ("gemm" / "gemm_batched" for CLBlast, "native"
 * for the host BLAS). cae_profile_collect waits for them, adds each one's
 * start-to-end time to its name's row, and releases them.
 */
#ifndef CAE_PROFILE_H
#define CAE_PROFILE_H

#include "runtime/runtime.h"

#include <stdio.h>

typedef struct {
    char name[64];
    double total_ms;
    size_t launches;
} cae_profile_row;

typedef struct {
    cae_profile_row *rows;
    size_t n, cap;
} cae_profile;

void cae_profile_init(cae_profile *p);
void cae_profile_free(cae_profile *p);
/* Wait for the queue, fold every kept event into p and release them all
 * (also on error). */
int cae_profile_collect(cae_profile *p, cae_ctx *ctx);
/* Rows by total time, largest first. */
void cae_profile_sort(cae_profile *p);
double cae_profile_total_ms(const cae_profile *p);
size_t cae_profile_launches(const cae_profile *p);
/* The top rows as a table, per step (times and launches divided by steps). */
void cae_profile_print(const cae_profile *p, FILE *out, size_t steps, size_t top);

#endif

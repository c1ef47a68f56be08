/* schedule.h: per-step learning-rate and weight-decay schedules, as the
 * official utils.cosine_scheduler: a linear warmup from start_warmup to
 * base over warmup_epochs * niter_per_ep steps (or warmup_steps when > 0,
 * numpy.linspace semantics: the last warmup step is exactly base), then a
 * cosine from base to final over the remaining steps. */
#ifndef CAE_SCHEDULE_H
#define CAE_SCHEDULE_H

#include <stddef.h>

typedef struct {
    double base, final;
    size_t epochs, niter_per_ep;
    size_t warmup_epochs;
    long warmup_steps; /* > 0 overrides warmup_epochs */
    double start_warmup;
} cae_schedule;

/* The value at global step it (0-based); steps past the end keep the last. */
double cae_schedule_at(const cae_schedule *s, size_t it);

#endif

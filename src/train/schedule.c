/* schedule.c: the official utils.cosine_scheduler, one value at a time.
 *
 * The official function builds the whole array with numpy; the value at
 * each step is reproduced bit for bit: the warmup is numpy.linspace (i *
 * step + start, the last sample replaced by base exactly; a one-sample
 * linspace is just start), the cosine part is final + 0.5 * (base - final)
 * * (1 + cos(pi * i / len)) in Python's left-to-right double arithmetic.
 * (Exactness relies on the ISO C mode's -ffp-contract=off: no fma.)
 *
 * Where the official code would fail its length assertion (warmup_steps > 0
 * with warmup_epochs == 0, or more warmup steps than steps), we still warm
 * up over warmup_steps and the cosine part is empty or short.
 */
#include "train/schedule.h"

#include <math.h>

#define SCHEDULE_PI 3.141592653589793 /* math.pi */

static size_t warmup_iters(const cae_schedule *s)
{
    if (s->warmup_steps > 0)
        return (size_t)s->warmup_steps;
    return s->warmup_epochs * s->niter_per_ep;
}

/* numpy.linspace(start_warmup, base, n)[i] */
static double linspace_at(const cae_schedule *s, size_t n, size_t i)
{
    double delta = s->base - s->start_warmup, step, y;
    if (n == 1)
        return s->start_warmup; /* numpy: y = 0 * delta + start */
    if (i == n - 1)
        return s->base;
    step = delta / (double)(n - 1);
    if (step == 0) {
        y = (double)i / (double)(n - 1); /* numpy's branch for a zero step */
        y = y * delta;
    } else {
        y = (double)i * step;
    }
    return y + s->start_warmup;
}

double cae_schedule_at(const cae_schedule *s, size_t it)
{
    size_t total = s->epochs * s->niter_per_ep, warm = warmup_iters(s), len;

    if (total > 0 && it >= total)
        it = total - 1; /* past the end: the last value */
    if (it < warm)
        return linspace_at(s, warm, it);
    len = total > warm ? total - warm : 0;
    if (len == 0) /* no cosine part: the warmup's last value holds */
        return warm > 0 ? linspace_at(s, warm, warm - 1) : s->base;
    it -= warm;
    return s->final + 0.5 * (s->base - s->final) *
                          (1.0 + cos(SCHEDULE_PI * (double)it / (double)len));
}

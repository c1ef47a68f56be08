/* lars.c: the official LARS step on the host (see lars.h). */
#include "eval/lars.h"

#include <math.h>

void cae_lars_defaults(cae_lars *o, double lr)
{
    o->lr = lr;
    o->weight_decay = 0.0;
    o->momentum = 0.9;
    o->trust_coefficient = 0.001;
}

void cae_lars_step(const cae_lars *o, float *p, const float *grad, float *mu, size_t n, int ndim)
{
    double q = 1.0;
    if (ndim > 1) {
        double pn = 0, dn = 0;
        for (size_t i = 0; i < n; i++) {
            double d = (double)grad[i] + o->weight_decay * (double)p[i];
            pn += (double)p[i] * p[i];
            dn += d * d;
        }
        pn = sqrt(pn);
        dn = sqrt(dn);
        if (pn > 0 && dn > 0)
            q = o->trust_coefficient * pn / dn;
    }
    for (size_t i = 0; i < n; i++) {
        double d = (double)grad[i];
        if (ndim > 1)
            d = (d + o->weight_decay * (double)p[i]) * q;
        mu[i] = (float)(o->momentum * (double)mu[i] + d);
        p[i] = (float)((double)p[i] - o->lr * (double)mu[i]);
    }
}

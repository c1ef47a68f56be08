/* lars.h: LARS as the official util/lars.py (MAE/CAE linear probing), on the
 * host: the evaluation heads' parameters are a few thousand floats, read
 * back and updated in double precision.
 *
 * For a tensor with ndim > 1:
 *   d = g + weight_decay * p
 *   q = trust * |p| / |d|  when |p| > 0 and |d| > 0, else 1
 *   d = q * d
 * tensors with ndim <= 1 (biases) use d = g unchanged; then
 *   mu = momentum * mu + d;  p -= lr * mu */
#ifndef CAE_LARS_H
#define CAE_LARS_H

#include <stddef.h>

typedef struct {
    double lr, weight_decay, momentum, trust_coefficient;
} cae_lars;

/* The official defaults: weight_decay 0, momentum 0.9, trust 0.001. */
void cae_lars_defaults(cae_lars *o, double lr);
void cae_lars_step(const cae_lars *o, float *p, const float *grad, float *mu, size_t n, int ndim);

#endif

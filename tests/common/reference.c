/* reference.c: the shared double references of reference.h. */
#include "reference.h"

#include "hostutil.h"

#include <math.h>

void tu_ref_softmax(double *y, const double *x, size_t R, size_t K)
{
    for (size_t r = 0; r < R; r++) {
        const double *xr = x + r * K;
        double *yr = y + r * K, m = -INFINITY, sum = 0.0;
        for (size_t k = 0; k < K; k++)
            m = fmax(m, xr[k]);
        for (size_t k = 0; k < K; k++)
            sum += (yr[k] = exp(xr[k] - m));
        for (size_t k = 0; k < K; k++)
            yr[k] /= sum;
    }
}

void tu_ref_softmax_backward(double *dx, const double *dy, const double *y, size_t R, size_t K)
{
    for (size_t r = 0; r < R; r++) {
        const double s = tu_dot(dy + r * K, y + r * K, K);
        for (size_t k = 0; k < K; k++)
            dx[r * K + k] = y[r * K + k] * (dy[r * K + k] - s);
    }
}

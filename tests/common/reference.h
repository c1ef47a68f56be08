/* reference.h: plain C references in double that more than one op suite
 * checks against (the softmax: test_ops_softmax and, inside attention,
 * test_ops_mha). A reference used by one suite stays in that suite.
 */
#ifndef CAE_TESTS_REFERENCE_H
#define CAE_TESTS_REFERENCE_H

#include <stddef.h>

/* y [R,K] = softmax of each row of x [R,K]; y may alias x */
void tu_ref_softmax(double *y, const double *x, size_t R, size_t K);
/* dx = y * (dy - sum_k dy y) per row; dx may alias dy */
void tu_ref_softmax_backward(double *dx, const double *dy, const double *y, size_t R, size_t K);

#endif

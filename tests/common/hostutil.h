/* hostutil.h: what every Check suite shares on the host side (no OpenCL, so
 * the host-only suites link it too): the suite's main, its test cases, host
 * arrays that are freed after each test, comparisons in double and central
 * finite differences of a double loss.
 *
 * A suite is one file: its tests, a function that builds the Suite with
 * tu_tcase, and TU_MAIN(that_function) as its main.
 */
#ifndef CAE_TESTS_HOSTUTIL_H
#define CAE_TESTS_HOSTUTIL_H

#include <check.h>
#include <stddef.h>

/* ---- running a suite ---- */

/* Runs every test of s (forked or not as CK_FORK says; make check sets
 * CK_FORK=no, which device suites need) and frees it; returns how many tests
 * failed. */
int tu_run(Suite *s);
/* tu_run's exit status: EXIT_FAILURE when any test failed. */
int tu_main(Suite *s);
#define TU_MAIN(suite_fn)                                                                          \
    int main(void)                                                                                 \
    {                                                                                              \
        return tu_main(suite_fn());                                                                \
    }

/* A test case of s named name, added to it, with a timeout of timeout_s
 * seconds (a cold PoCL compile takes minutes; 0 keeps Check's default) and
 * a checked teardown that frees the test's tu_alloc arrays. */
TCase *tu_tcase(Suite *s, const char *name, double timeout_s);

/* Adds every test to tc, in order:
 * TU_ADD_TESTS(tc, test_forward, test_backward); */
void tu_add_tests(TCase *tc, const TTest *const *tests, size_t n);
#define TU_ADD_TESTS(tc, ...)                                                                      \
    tu_add_tests((tc), (const TTest *const[]){__VA_ARGS__},                                        \
                 sizeof((const TTest *const[]){__VA_ARGS__}) / sizeof(const TTest *))

/* ---- host arrays, freed after the test (by tu_tcase's teardown) ---- */

void *tu_alloc(size_t bytes); /* zeroed; never NULL (asserts) */
float *tu_fvec(size_t n);
double *tu_dvec(size_t n);
int *tu_ivec(size_t n);
/* n values from tu_random */
float *tu_frand(size_t n, float lo, float hi, unsigned seed);
double *tu_to_double(const float *x, size_t n);
float *tu_to_float(const double *x, size_t n);
/* a[i] + b[i] in double: a start value plus a reference increment */
double *tu_plus(const float *a, const double *b, size_t n);
/* Frees every tu_alloc array now (tu_tcase's teardown). */
void tu_free_all(void);

/* ---- values ---- */

/* Fill with deterministic pseudo-random values in [lo, hi). */
void tu_random(float *x, size_t n, float lo, float hi, unsigned seed);
/* A small deterministic integer generator (labels, indices): the next value
 * of the sequence *s. */
unsigned tu_next_u(unsigned *s);
/* CAE_TEST_SMALL is set and not "0": shrink the long shapes (oclgrind). */
int tu_small_mode(void);
double tu_dot(const double *a, const double *b, size_t n);

/* ---- comparisons ---- */

/* Assert max |got - want| <= tol * max(1, max |want|), naming what; a NaN
 * anywhere fails. */
void tu_assert_close(const char *what, const float *got, const double *want, size_t n, double tol);
void tu_assert_close_d(const char *what, const double *got, const double *want, size_t n,
                       double tol);
/* Exact equality, element by element, NaN matching NaN. */
void tu_assert_equal_f(const char *what, const float *got, const float *want, size_t n);

/* ---- central finite differences, in double ---- */

#define TU_FD_H 1e-5 /* the step of tu_fd_grad */

/* a scalar loss of whatever state points to */
typedef double (*tu_loss_fn)(void *state);

/* (f(param[i] + h) - f(param[i] - h)) / 2h, param[i] restored; param is
 * part of what f reads through state. */
double tu_fd(tu_loss_fn f, void *state, double *param, size_t i, double h);
/* fd[i] = tu_fd(f, state, param, i, TU_FD_H) for i < n */
void tu_fd_grad(double *fd, tu_loss_fn f, void *state, double *param, size_t n);
/* tu_fd_grad against the analytic gradient: max |fd - analytic| <= tol *
 * max(1, max |analytic|). */
void tu_fd_check(const char *what, const double *analytic, tu_loss_fn f, void *state,
                 double *param, size_t n, double tol);

#endif

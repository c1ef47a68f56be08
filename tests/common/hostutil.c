/* hostutil.c: the suite runner, host arrays, comparisons and finite
 * differences of hostutil.h. */
#include "hostutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- running a suite ---- */

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

int tu_main(Suite *s)
{
    return tu_run(s) > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

TCase *tu_tcase(Suite *s, const char *name, double timeout_s)
{
    TCase *tc = tcase_create(name);
    if (timeout_s > 0)
        tcase_set_timeout(tc, timeout_s);
    tcase_add_checked_fixture(tc, NULL, tu_free_all);
    suite_add_tcase(s, tc);
    return tc;
}

void tu_add_tests(TCase *tc, const TTest *const *tests, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tcase_add_test(tc, tests[i]);
}

/* ---- host arrays: one list per process, emptied after every test ---- */

static void **arrays;
static size_t n_arrays, cap_arrays;

void *tu_alloc(size_t bytes)
{
    void *p;
    if (n_arrays == cap_arrays) {
        size_t cap = cap_arrays ? 2 * cap_arrays : 64;
        void **grown = realloc(arrays, cap * sizeof *grown);
        ck_assert_msg(grown != NULL, "out of host memory");
        arrays = grown;
        cap_arrays = cap;
    }
    p = calloc(1, bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of host memory (%zu bytes)", bytes);
    arrays[n_arrays++] = p;
    return p;
}

void tu_free_all(void)
{
    for (size_t i = 0; i < n_arrays; i++)
        free(arrays[i]);
    free(arrays);
    arrays = NULL;
    n_arrays = cap_arrays = 0;
}

float *tu_fvec(size_t n)
{
    return tu_alloc(n * sizeof(float));
}

double *tu_dvec(size_t n)
{
    return tu_alloc(n * sizeof(double));
}

int *tu_ivec(size_t n)
{
    return tu_alloc(n * sizeof(int));
}

float *tu_frand(size_t n, float lo, float hi, unsigned seed)
{
    float *x = tu_fvec(n);
    tu_random(x, n, lo, hi, seed);
    return x;
}

double *tu_to_double(const float *x, size_t n)
{
    double *d = tu_dvec(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

float *tu_to_float(const double *x, size_t n)
{
    float *f = tu_fvec(n);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)x[i];
    return f;
}

double *tu_plus(const float *a, const double *b, size_t n)
{
    double *d = tu_dvec(n);
    for (size_t i = 0; i < n; i++)
        d[i] = (double)a[i] + b[i];
    return d;
}

/* ---- values ---- */

void tu_random(float *x, size_t n, float lo, float hi, unsigned seed)
{
    unsigned long long s = 0x9e3779b97f4a7c15ULL * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = lo + (hi - lo) * (float)((s >> 11) * (1.0 / 9007199254740992.0));
    }
}

unsigned tu_next_u(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

int tu_small_mode(void)
{
    const char *s = getenv("CAE_TEST_SMALL");
    return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

double tu_dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ---- comparisons ---- */

void tu_assert_close(const char *what, const float *got, const double *want, size_t n, double tol)
{
    double scale = 1.0, worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= worst)) { /* also catches NaN */
            worst = e;
            at = i;
            if (isnan(e))
                break;
        }
    }
    ck_assert_msg(worst <= tol * scale, "%s: max error %.3g at %zu (got %.9g want %.9g, tol %.3g)",
                  what, worst, at, n ? (double)got[at] : 0.0, n ? want[at] : 0.0, tol * scale);
}

void tu_assert_close_d(const char *what, const double *got, const double *want, size_t n,
                       double tol)
{
    double scale = 1.0, worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        const double e = fabs(got[i] - want[i]);
        if (!(e <= worst)) { /* also catches NaN */
            worst = e;
            at = i;
        }
    }
    ck_assert_msg(worst <= tol * scale, "%s: max error %g at %zu (got %g, want %g), tol %g", what,
                  worst, at, n ? got[at] : 0.0, n ? want[at] : 0.0, tol * scale);
}

void tu_assert_equal_f(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i] || (isnan(got[i]) && isnan(want[i])),
                      "%s: element %zu is %.9g, want %.9g", what, i, (double)got[i],
                      (double)want[i]);
}

/* ---- finite differences ---- */

double tu_fd(tu_loss_fn f, void *state, double *param, size_t i, double h)
{
    const double keep = param[i];
    double lp, lm;
    param[i] = keep + h;
    lp = f(state);
    param[i] = keep - h;
    lm = f(state);
    param[i] = keep;
    return (lp - lm) / (2.0 * h);
}

void tu_fd_grad(double *fd, tu_loss_fn f, void *state, double *param, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fd[i] = tu_fd(f, state, param, i, TU_FD_H);
}

void tu_fd_check(const char *what, const double *analytic, tu_loss_fn f, void *state,
                 double *param, size_t n, double tol)
{
    double *fd = tu_dvec(n);
    tu_fd_grad(fd, f, state, param, n);
    tu_assert_close_d(what, fd, analytic, n, tol);
}

/* test_ops_reduce.c: the deterministic reductions (src/ops/reduce.c): sum
 * and sum of squares, and the in-place scale.
 *
 * The sums are compared bit for bit with a host replica of their summation
 * order (the sum must be the same float on every device) and with double
 * within the error bound of a blocked float sum, on sizes around the block
 * and chunk boundaries, exact integer data, zero elements and past the cap
 * on the number of chunks. CAE_TEST_SMALL=1 skips the one large reduction
 * (for oclgrind runs).
 */
#include "tests/common/testutil.h"

#include "ops/ops.h"

#include <math.h>

/* The summation order of reduce.c / reduce.cl, replayed in host float:
 * chunks of about 4096 (at most 16384 chunks), each summed in blocks of 64,
 * then the partials summed the same way. Any device must match it exactly. */
static float replica_range(const float *x, size_t lo, size_t hi, int squares)
{
    float total = 0.0f;
    for (size_t b0 = lo; b0 < hi; b0 += 64) {
        const size_t b1 = b0 + 64 < hi ? b0 + 64 : hi;
        float block = 0.0f;
        for (size_t i = b0; i < b1; i++) {
            const float v = squares ? x[i] * x[i] : x[i];
            block += v;
        }
        total += block;
    }
    return total;
}

static float replica_sum(const float *x, size_t n, int squares)
{
    size_t c = (n + 4095) / 4096, len;
    float *part, r;
    if (c > 16384)
        c = 16384;
    if (c == 0)
        c = 1;
    len = (n + c - 1) / c;
    if (len == 0)
        len = 1;
    c = (n + len - 1) / len;
    if (c == 0)
        c = 1;
    ck_assert_uint_eq(c, cae_reduce_scratch_elems(n));
    part = tu_fvec(c);
    for (size_t i = 0; i < c; i++) {
        const size_t lo = i * len, hi = lo + len < n ? lo + len : n;
        part[i] = replica_range(x, lo, hi, squares);
    }
    r = replica_range(part, 0, c, 0);
    return r;
}

/* one device reduction (sum or sum of squares) of x[n] */
static float device_sum(const tu_dbuf *dx, size_t n, int squares)
{
    const size_t ns = cae_reduce_scratch_elems(n);
    tu_dbuf out = tu_filled(1, 5.0f), scratch = tu_filled(ns, 0.0f);
    float r;
    ck_assert_int_eq((squares ? cae_sum_squares : cae_sum)(
                         tu_ctx(), out.buf, dx->buf, n, scratch.buf), 0);
    tu_download(&r, &out);
    tu_free(&out);
    tu_free(&scratch);
    return r;
}

/* sum and sum of squares of x: the replica exactly, and double within the
 * error bound of a blocked float sum */
static void check_reduce(const float *x, size_t n)
{
    tu_dbuf dx = tu_upload(x, n);
    for (int squares = 0; squares <= 1; squares++) {
        double want = 0.0, mag = 0.0;
        float got = device_sum(&dx, n, squares);
        for (size_t i = 0; i < n; i++) {
            const double v = squares ? (double)x[i] * x[i] : x[i];
            want += v;
            mag += fabs(v);
        }
        ck_assert_msg(got == replica_sum(x, n, squares),
                      "n=%zu squares=%d: %.9g differs from the replica %.9g",
                      n, squares, (double)got,
                      (double)replica_sum(x, n, squares));
        ck_assert_msg(fabs(got - want) <= 1e-5 * mag + 1e-30,
                      "n=%zu squares=%d: %.9g, want %.12g", n, squares,
                      (double)got, want);
        /* and again: the same bits */
        ck_assert(device_sum(&dx, n, squares) == got);
    }
    tu_free(&dx);
}

START_TEST(test_reduce_sizes)
{
    const size_t sizes[] = {1, 2, 63, 65, 4095, 4096, 4097, 100003};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        float *x = tu_frand(sizes[s], -1.0f, 1.0f, 31 + (unsigned)s);
        check_reduce(x, sizes[s]);
    }
}
END_TEST

START_TEST(test_reduce_exact)
{
    /* small integers: every partial sum is an exact float, so the device
     * must return the exact integer sums */
    const size_t n = 100003;
    float *x = tu_fvec(n);
    long long sum = 0, sq = 0;
    unsigned s = 3;
    tu_dbuf dx;
    for (size_t i = 0; i < n; i++) {
        const int v = (int)(tu_next_u(&s) % 17) - 8;
        x[i] = (float)v;
        sum += v;
        sq += (long long)v * v;
    }
    dx = tu_upload(x, n);
    ck_assert(device_sum(&dx, n, 0) == (float)sum);
    ck_assert(device_sum(&dx, n, 1) == (float)sq);
    ck_assert((double)(float)sum == (double)sum); /* exactly representable */
    tu_free(&dx);
}
END_TEST

START_TEST(test_reduce_empty)
{
    tu_dbuf out = tu_filled(1, 5.0f), in = tu_filled(1, 3.0f);
    tu_dbuf scratch = tu_filled(cae_reduce_scratch_elems(0), 0.0f);
    float r;
    ck_assert_int_eq(cae_sum(tu_ctx(), out.buf, in.buf, 0, scratch.buf), 0);
    tu_download(&r, &out);
    ck_assert(r == 0.0f);
    tu_free(&out);
    tu_free(&in);
    tu_free(&scratch);
}
END_TEST

START_TEST(test_reduce_large)
{
    /* past 16384 * 4096 elements the chunk count is capped and chunks grow */
    const size_t n = (size_t)16384 * 4096 + 12345;
    float *x;
    if (tu_small_mode())
        return;
    ck_assert_uint_eq(cae_reduce_scratch_elems(n), 16384);
    x = tu_frand(n, -1.0f, 1.0f, 41);
    check_reduce(x, n);
}
END_TEST

START_TEST(test_scale)
{
    const size_t n = 1001;
    const float alpha = -0.37f;
    float *x = tu_frand(n, -3.0f, 3.0f, 51), *got = tu_fvec(n), *want = tu_fvec(n);
    tu_dbuf dx = tu_upload(x, n);
    for (size_t i = 0; i < n; i++)
        want[i] = x[i] * alpha;
    ck_assert_int_eq(cae_scale(tu_ctx(), dx.buf, alpha, n), 0);
    tu_download(got, &dx);
    tu_assert_equal_f("scale", got, want, n);
    tu_free(&dx);
}
END_TEST

static Suite *ops_reduce_suite(void)
{
    Suite *s = suite_create("ops_reduce");
    TCase *tc = tu_tcase(s, "reduce", 120); /* a cold PoCL compile is slow */
    TU_ADD_TESTS(tc, test_reduce_sizes, test_reduce_exact, test_reduce_empty, test_reduce_large,
                 test_scale);
    return s;
}

TU_MAIN(ops_reduce_suite)

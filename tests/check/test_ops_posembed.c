/* test_ops_posembed.c: the fixed 2-D sin-cos position table
 * (src/ops/posembed.c, host only): every value of a small table against
 * values worked out by hand, the ViT-B table's unit (sin, cos) pairs, zero
 * cls row and last frequency, and the widths it refuses.
 */
#include "tests/common/hostutil.h"

#include "ops/ops.h"

#include <math.h>

START_TEST(test_sincos_values)
{
    /* G=3, C=8: f=2, w = {1, 1/100}; row n+1 holds patch n = r*3 + c as
     * [sin r, sin r/100, cos r, cos r/100, sin c, sin c/100, cos c, cos c/100] */
    static const double want[10][8] = {
        {0, 0, 0, 0, 0, 0, 0, 0}, /* cls */
        {0, 0, 1, 1, 0, 0, 1, 1}, /* r=0 c=0 */
        {0, 0, 1, 1, 0.8414709848078965, 0.009999833334166664,
         0.5403023058681398, 0.9999500004166653}, /* r=0 c=1 */
        {0, 0, 1, 1, 0.9092974268256817, 0.019998666693333080,
         -0.4161468365471424, 0.9998000066665778}, /* r=0 c=2 */
        {0.8414709848078965, 0.009999833334166664, 0.5403023058681398,
         0.9999500004166653, 0, 0, 1, 1}, /* r=1 c=0 */
        {0.8414709848078965, 0.009999833334166664, 0.5403023058681398,
         0.9999500004166653, 0.8414709848078965, 0.009999833334166664,
         0.5403023058681398, 0.9999500004166653}, /* r=1 c=1 */
        {0.8414709848078965, 0.009999833334166664, 0.5403023058681398,
         0.9999500004166653, 0.9092974268256817, 0.019998666693333080,
         -0.4161468365471424, 0.9998000066665778}, /* r=1 c=2 */
        {0.9092974268256817, 0.019998666693333080, -0.4161468365471424,
         0.9998000066665778, 0, 0, 1, 1}, /* r=2 c=0 */
        {0.9092974268256817, 0.019998666693333080, -0.4161468365471424,
         0.9998000066665778, 0.8414709848078965, 0.009999833334166664,
         0.5403023058681398, 0.9999500004166653}, /* r=2 c=1 */
        {0.9092974268256817, 0.019998666693333080, -0.4161468365471424,
         0.9998000066665778, 0.9092974268256817, 0.019998666693333080,
         -0.4161468365471424, 0.9998000066665778}, /* r=2 c=2 */
    };
    float t[10 * 8];
    ck_assert_int_eq(cae_sincos_table(t, 3, 8), 0);
    for (int i = 0; i < 80; i++)
        ck_assert_msg(t[i] == (float)want[i / 8][i % 8],
                      "row %d col %d: %.9g, want %.9g", i / 8, i % 8,
                      (double)t[i], want[i / 8][i % 8]);
}
END_TEST

START_TEST(test_sincos_shape)
{
    /* the ViT-B table: unit (sin, cos) pairs, zero cls row, and widths that
     * are not multiples of 4 refused */
    const size_t G = 14, C = 768, f = C / 4;
    float *t = tu_fvec((G * G + 1) * C), dummy[64];
    ck_assert_int_eq(cae_sincos_table(t, G, C), 0);
    for (size_t c = 0; c < C; c++)
        ck_assert(t[c] == 0.0f);
    for (size_t n = 0; n < G * G; n++)
        for (size_t j = 0; j < f; j++) {
            const float *row = t + (n + 1) * C;
            const double a = (double)row[j] * row[j] + (double)row[f + j] * row[f + j];
            const double b = (double)row[2 * f + j] * row[2 * f + j] +
                             (double)row[3 * f + j] * row[3 * f + j];
            ck_assert(fabs(a - 1.0) < 1e-6 && fabs(b - 1.0) < 1e-6);
        }
    /* the last frequency: w = 1/10000^((f-1)/f) */
    {
        const size_t n = G * G - 1; /* r = c = 13 */
        const double w = pow(10000.0, -(double)(f - 1) / (double)f);
        ck_assert(fabs(t[(n + 1) * C + f - 1] - sin(13.0 * w)) < 1e-7);
        ck_assert(fabs(t[(n + 1) * C + C - 1] - cos(13.0 * w)) < 1e-7);
    }
    ck_assert_int_eq(cae_sincos_table(dummy, 2, 6), -1);
    ck_assert_int_eq(cae_sincos_table(dummy, 2, 10), -1);
}
END_TEST

static Suite *ops_posembed_suite(void)
{
    Suite *s = suite_create("ops_posembed");
    TCase *tc = tu_tcase(s, "posembed", 120);
    TU_ADD_TESTS(tc, test_sincos_values, test_sincos_shape);
    return s;
}

TU_MAIN(ops_posembed_suite)

/* test_lars.c: the LARS step (src/eval/lars.c) against values worked out by
 * hand: the trust ratio, momentum, the 1-D tensors it does not adapt, weight
 * decay inside the adaptation and a zero update. Host only.
 */
#include "tests/common/hostutil.h"

#include "eval/lars.h"

#include <math.h>

START_TEST(test_lars_hand)
{
    cae_lars o;
    float p[2] = {3, 4}, g[2] = {0.6f, 0.8f}, mu[2] = {0, 0};
    float bp[1] = {1}, bg[1] = {2}, bmu[1] = {0};
    cae_lars_defaults(&o, 0.5);
    ck_assert(o.momentum == 0.9 && o.trust_coefficient == 0.001 && o.weight_decay == 0.0);
    /* |p| = 5, |g| = 1: q = 0.005, d = (0.003, 0.004), p -= 0.5 d */
    cae_lars_step(&o, p, g, mu, 2, 2);
    ck_assert_msg(fabs(p[0] - 2.9985) < 1e-6 && fabs(p[1] - 3.998) < 1e-6, "step 1: %g %g", p[0], p[1]);
    ck_assert_msg(fabs(mu[0] - 0.003) < 1e-8 && fabs(mu[1] - 0.004) < 1e-8, "mu 1");
    /* |p| = 4.9975: q = 0.0049975; mu = 0.9 mu + (0.0029985, 0.003998) */
    cae_lars_step(&o, p, g, mu, 2, 2);
    ck_assert_msg(fabs(mu[0] - 0.0056985) < 1e-8 && fabs(mu[1] - 0.007598) < 1e-8, "mu 2: %.9g %.9g",
                  mu[0], mu[1]);
    ck_assert_msg(fabs(p[0] - 2.99565075) < 1e-6 && fabs(p[1] - 3.994201) < 1e-6, "step 2: %.9g %.9g",
                  p[0], p[1]);
    /* a bias (1-D): no adaptation, mu = 2, p = 1 - 0.5 * 2 */
    cae_lars_step(&o, bp, bg, bmu, 1, 1);
    ck_assert_msg(fabs(bp[0]) < 1e-7 && bmu[0] == 2.0f, "bias: %g %g", bp[0], bmu[0]);
    /* weight decay inside the adaptation: g = 0, wd 0.2 gives d = (0.6, 0.8) as above */
    {
        float q[2] = {3, 4}, zero[2] = {0, 0}, m2[2] = {0, 0};
        o.weight_decay = 0.2;
        cae_lars_step(&o, q, zero, m2, 2, 2);
        ck_assert_msg(fabs(q[0] - 2.9985) < 1e-6 && fabs(q[1] - 3.998) < 1e-6, "wd: %g %g", q[0], q[1]);
    }
    /* a zero update keeps q = 1 and the tensor unchanged */
    {
        float q[2] = {2, 4}, gg[2] = {-1, -2}, m2[2] = {0, 0};
        o.weight_decay = 0.5; /* d = g + 0.5 p = 0 exactly */
        cae_lars_step(&o, q, gg, m2, 2, 2);
        ck_assert_msg(q[0] == 2 && q[1] == 4 && m2[0] == 0, "zero update: %g %g", q[0], q[1]);
    }
}
END_TEST

static Suite *lars_suite(void)
{
    Suite *s = suite_create("lars");
    TCase *tc = tu_tcase(s, "lars", 300);
    tcase_add_test(tc, test_lars_hand);
    return s;
}

TU_MAIN(lars_suite)

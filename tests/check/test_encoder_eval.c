/* test_encoder_eval.c: the frozen evaluation encoder (src/eval/encoder_eval.c)
 * of a tiny model: feature shapes, cls and mean pooling, determinism, a batch
 * of one against the same image in a batch, and a missing weights file.
 */
#include "tests/common/testutil.h"
#include "tests/common/tinymodel.h"

#include "eval/encoder_eval.h"

#include <math.h>

static void tiny_cfg(cae_config *c)
{
    tu_tiny_config(c, 16, 32, 2, 32, 6);
    c->regressor_depth = 1;
    c->decoder_depth = 1;
    c->pixel_target = 1;
    ck_assert_int_eq(cae_config_finish(c), 0);
}

START_TEST(test_encoder_eval)
{
    cae_config c;
    cae_encoder_eval e;
    const size_t B = 3, D = 32, view = 3 * 16 * 16;
    float *img = tu_frand(B * view, -1, 1, 71), *f1 = tu_fvec(B * D), *f2 = tu_fvec(B * D);
    float *fm = tu_fvec(B * D), *one = tu_fvec(D);
    tiny_cfg(&c);
    ck_assert_int_eq(cae_encoder_eval_init(&e, tu_ctx(), &c, B), 0);
    ck_assert_int_eq(cae_encoder_eval_load(&e, "random", 5), 0);
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img, B, CAE_POOL_CLS, f1), 0);
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img, B, CAE_POOL_CLS, f2), 0);
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img, B, CAE_POOL_MEAN, fm), 0);
    /* a batch of one gives image 1's features alone */
    ck_assert_int_eq(cae_encoder_eval_forward(&e, img + view, 1, CAE_POOL_CLS, one), 0);
    for (size_t i = 0; i < B * D; i++) {
        ck_assert(isfinite(f1[i]) && isfinite(fm[i]));
        ck_assert_msg(f1[i] == f2[i], "forward not deterministic at %zu", i);
    }
    for (size_t i = 0; i < D; i++)
        ck_assert_msg(fabsf(one[i] - f1[D + i]) < 1e-4f, "batch of one differs at %zu", i);
    {
        /* cls features (final LN of the cls row) have zero mean over D; the
         * images differ, so do their features, and pooling choices differ */
        double m = 0, diff = 0, pdiff = 0;
        for (size_t i = 0; i < D; i++) {
            m += f1[i];
            diff += fabs(f1[i] - f1[D + i]);
            pdiff += fabs(f1[i] - fm[i]);
        }
        ck_assert_msg(fabs(m / D) < 1e-2, "cls feature mean %g", m / D);
        ck_assert(diff > 1e-3 && pdiff > 1e-3);
    }
    ck_assert_int_ne(cae_encoder_eval_load(&e, "/nonexistent/weights.safetensors", 0), 0);
    cae_encoder_eval_free(&e);
}
END_TEST

static Suite *encoder_eval_suite(void)
{
    Suite *s = suite_create("encoder_eval");
    TCase *tc = tu_tcase(s, "encoder", 300);
    tcase_add_test(tc, test_encoder_eval);
    return s;
}

TU_MAIN(encoder_eval_suite)

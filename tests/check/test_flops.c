/* test_flops: the analytic step FLOP count (src/model/flops.c) against a count
 * done by hand for a tiny configuration (the sums are in the comments). */
#include "model/cae_config.h"
#include "model/flops.h"
#include "model/gemm_shapes.h"

#include "tests/common/hostutil.h"

#include <check.h>
#include <stdlib.h>

/* 8x8 images, 4x4 patches: 4 patches, 2 masked, 2 visible; width 4, one
 * head, MLP 8; one block of each kind; vocabulary 10; batch 1. */
static cae_config tiny(int decoder_width)
{
    cae_config c;
    cae_config_defaults(&c);
    c.input_size = 8;
    c.patch_size = 4;
    c.embed_dim = 4;
    c.depth = 1;
    c.num_heads = 1;
    c.mlp_ratio = 2.0;
    c.decoder_embed_dim = decoder_width;
    c.regressor_depth = 1;
    c.decoder_depth = 1;
    c.decoder_num_heads = 1;
    c.decoder_num_classes = 10;
    c.num_mask_patches = 2;
    c.pixel_target = 0;
    ck_assert_int_eq(cae_config_finish(&c), 0);
    return c;
}

START_TEST(test_hand_count)
{
    cae_config c = tiny(4);
    cae_flops f;
    cae_flops_count(&c, 1, 100, &f);
    /* patch embedding 2*2*48*4 = 768 (x2: weight gradient only); block over
     * 3 tokens: qkv 288 + scores/values 144 + proj 96 + fc1 192 + fc2 192 =
     * 912 (x3) */
    ck_assert_double_eq(f.encoder, 1536.0 + 2736.0);
    ck_assert_double_eq(f.alignment, 768.0 + 912.0); /* forward only, cls + 2 masked */
    ck_assert_double_eq(f.projection, 0.0);           /* Dd == D */
    /* q 64 + k,v 256 + scores/values 128 + proj 64 + fc1 128 + fc2 128 = 768 */
    ck_assert_double_eq(f.regressor, 3.0 * 768.0);
    /* 2 tokens: qkv 192 + 64 + proj 64 + fc1 128 + fc2 128 = 576 */
    ck_assert_double_eq(f.decoder, 3.0 * 576.0);
    ck_assert_double_eq(f.head, 3.0 * 160.0);
    ck_assert_double_eq(f.loss, 6.0 * 20.0 + 4.0 * 8.0);
    ck_assert_double_eq(f.optimizer, 1400.0);
    ck_assert_double_eq(f.total, 12016.0);
}
END_TEST

START_TEST(test_projection_and_batch)
{
    cae_config c = tiny(8);
    cae_flops f1, f3;
    cae_flops_count(&c, 1, 0, &f1);
    /* D 4 -> Dd 8 over cls + 2 visible: 2*3*4*8 = 192, x3 */
    ck_assert_double_eq(f1.projection, 576.0);
    /* the alignment pass adds its own forward projection (cls + 2 masked) */
    ck_assert_double_eq(f1.alignment, 768.0 + 912.0 + 192.0);
    /* everything but the optimizer scales with the batch */
    cae_flops_count(&c, 3, 0, &f3);
    ck_assert_double_eq(f3.total, 3.0 * f1.total);
    ck_assert(f1.total > 0);
}
END_TEST

/* The GEMM shapes cae-cl-tune times add up to flops.c's GEMM share (all
 * but the loss and the optimizer), each shape listed once. */
static void shapes_match_flops(const cae_config *c, size_t B)
{
    cae_gemm_shape sh[128];
    cae_flops f;
    double sum = 0;
    size_t n = cae_gemm_shapes(c, B, sh, 128);
    ck_assert(n > 0 && n <= 128);
    cae_flops_count(c, B, 0, &f);
    for (size_t i = 0; i < n; i++) {
        sum += cae_gemm_shape_flops(&sh[i]);
        if (i > 0) /* largest share first */
            ck_assert(cae_gemm_shape_flops(&sh[i]) <= cae_gemm_shape_flops(&sh[i - 1]));
        for (size_t j = 0; j < i; j++)
            ck_assert(!(sh[i].m == sh[j].m && sh[i].n == sh[j].n && sh[i].k == sh[j].k &&
                        sh[i].batch == sh[j].batch && sh[i].trans_a == sh[j].trans_a &&
                        sh[i].trans_b == sh[j].trans_b));
    }
    ck_assert_double_eq_tol(sum, f.total - f.loss - f.optimizer, 1e-9 * f.total);
}

START_TEST(test_no_alignment_term)
{
    cae_config c = tiny(8);
    cae_flops with, without;
    cae_flops_count(&c, 1, 0, &with);
    c.align_loss_weight = 0.0; /* the step skips the pass; nothing else changes */
    cae_flops_count(&c, 1, 0, &without);
    ck_assert_double_eq(without.alignment, 0.0);
    ck_assert_double_eq(without.total, with.total - with.alignment);
    ck_assert_double_eq(without.projection, with.projection);
}
END_TEST

START_TEST(test_gemm_shapes)
{
    cae_config c = tiny(4), p = tiny(8), small;
    shapes_match_flops(&c, 1);
    shapes_match_flops(&p, 3);
    cae_config_defaults(&small);
    ck_assert_int_eq(cae_config_preset(&small, "cae_small_patch16_224_8k_vocab"), 0);
    ck_assert_int_eq(cae_config_finish(&small), 0);
    shapes_match_flops(&small, 8);
}
END_TEST

static Suite *flops_suite(void)
{
    Suite *s = suite_create("flops");
    TCase *tc = tu_tcase(s, "count", 300);
    TU_ADD_TESTS(tc, test_hand_count, test_projection_and_batch, test_no_alignment_term,
                 test_gemm_shapes);
    return s;
}

TU_MAIN(flops_suite)

/* tests/check/test_loader_cls.c: the classification programs' loader
   (src/data/loader_cls.c) on the test ImageFolder.

   A batch depends only on the images' indices and seeds: 1, 3 and 8
   threads give the same bytes for fine-tuning's timm transform (RandAugment,
   random erasing), the probes' augmentation and the evaluation transform;
   the labels are the data set's; other seeds give other views; a label
   outside the class count is refused with one line. */
#include "data/loader_cls.h"
#include "tests/common/capture.h"
#include "tests/common/fixture.h"
#include "tests/common/hostutil.h"
#include "tests/common/scratch.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define S 48 /* above 32: the evaluation transform resizes and crops */
#define N_IMAGES 6

static cae_dataset *ds;
static char base[256];

static void setup(void)
{
    char root[4096];
    tu_src_path(root, sizeof root, "tests/data/images/folder");
    ck_assert_int_eq(cae_dataset_open(&ds, root), 0);
    ck_assert_uint_ge(cae_dataset_len(ds), N_IMAGES);
    scratch_make(base, sizeof base, "loader-cls");
}

static void teardown(void)
{
    capture_abandon();
    cae_dataset_free(ds);
    scratch_remove(base);
}

/* One batch of N_IMAGES images (in a shuffled order) with workers threads;
 * views and labels are the caller's. */
static void load(const cae_cls_source *src, int workers, uint64_t seed0, float *views,
                 int32_t *labels)
{
    static const size_t idx[N_IMAGES] = {5, 0, 3, 1, 4, 2};
    uint64_t seeds[N_IMAGES];
    cae_cls_loader *l;
    for (size_t i = 0; i < N_IMAGES; i++)
        seeds[i] = seed0 + 7 * i;
    ck_assert_int_eq(cae_cls_loader_new(&l, workers, N_IMAGES), 0);
    ck_assert_int_eq(cae_cls_loader_load(l, src, idx, seeds, N_IMAGES, views, labels), 0);
    cae_cls_loader_free(l);
    for (size_t i = 0; i < N_IMAGES; i++)
        ck_assert_int_eq(labels[i], cae_dataset_label(ds, idx[i]));
}

/* The same bytes whatever the thread count; another seed, other views
 * (only for a random transform). */
static void check_transform(const cae_cls_source *src, int random)
{
    size_t n = (size_t)N_IMAGES * 3 * S * S;
    float *one = tu_alloc(n * sizeof *one), *many = tu_alloc(n * sizeof *many);
    int32_t la[N_IMAGES], lb[N_IMAGES];
    load(src, 1, 100, one, la);
    load(src, 3, 100, many, lb);
    ck_assert_mem_eq(one, many, n * sizeof *one);
    load(src, 8, 100, many, lb);
    ck_assert_mem_eq(one, many, n * sizeof *one);
    load(src, 3, 999, many, lb);
    ck_assert_int_eq(memcmp(one, many, n * sizeof *one) != 0, random);
}

static cae_cls_source source(void)
{
    cae_cls_source src = {ds, cae_dataset_num_classes(ds), S, 1, NULL, NULL};
    return src;
}

START_TEST(test_finetune_transform)
{
    cae_cls_train_cfg train;
    cae_cls_source src = source();
    cae_cls_train_cfg_default(&train);
    train.input_size = S;
    src.train = &train;
    check_transform(&src, 1);
}
END_TEST

START_TEST(test_probe_augmentation)
{
    /* the probes' RandomResizedCrop + flip, bicubic, no second view */
    cae_augment_cfg aug = {S, 0, 0.08, 1.0, CAE_FILTER_BICUBIC, CAE_FILTER_BICUBIC, 0.4, 1};
    cae_cls_source src = source();
    src.aug = &aug;
    check_transform(&src, 1);
}
END_TEST

START_TEST(test_eval_transform)
{
    cae_cls_source src = source();
    check_transform(&src, 0);
}
END_TEST

START_TEST(test_label_out_of_range)
{
    float *views = tu_alloc((size_t)N_IMAGES * 3 * S * S * sizeof *views);
    int32_t labels[N_IMAGES];
    size_t idx[1] = {0};
    cae_cls_source src = source();
    cae_cls_loader *l;
    char *err;
    src.num_classes = 0;
    ck_assert_int_eq(cae_cls_loader_new(&l, 2, N_IMAGES), 0);
    capture_begin(base);
    ck_assert_int_eq(cae_cls_loader_load(l, &src, idx, NULL, 1, views, labels), -1);
    err = capture_end();
    cae_cls_loader_free(l);
    ck_assert_msg(strchr(err, '\n') == strrchr(err, '\n') && strstr(err, "label") != NULL,
                  "expected one line about the label, got: %s", err);
    free(err);
}
END_TEST

static Suite *loader_cls_suite(void)
{
    Suite *s = suite_create("loader_cls");
    TCase *tc = tu_tcase(s, "loader_cls", 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    TU_ADD_TESTS(tc, test_finetune_transform, test_probe_augmentation, test_eval_transform,
                 test_label_out_of_range);
    return s;
}

TU_MAIN(loader_cls_suite)

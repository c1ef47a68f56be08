/* test_runtime.c: device choice, kernel program, binary cache, memory
 * helpers, the GEMM wrapper on both back ends, and the parameter arena. */
#include "model/cae_config.h"
#include "runtime/gemm.h"
#include "model/params.h"
#include "ops/ops.h"
#include "runtime/runtime.h"
#include "tests/common/capture.h"
#include "tests/common/testutil.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

START_TEST(test_fill_and_copy)
{
    cae_ctx *ctx = tu_ctx();
    tu_dbuf a = tu_filled(37, 0.0f), b = tu_filled(37, 5.0f);
    float h[37];
    ck_assert_int_eq(cae_fill_float(ctx, a.buf, 2.5f, 37), 0);
    tu_download(h, &a);
    for (int i = 0; i < 37; i++)
        ck_assert_float_eq(h[i], 2.5f);
    ck_assert_int_eq(cae_fill_zero(ctx, cae_buf_at(a.buf, 3), 30), 0);
    tu_download(h, &a);
    ck_assert_float_eq(h[2], 2.5f);
    ck_assert_float_eq(h[3], 0.0f);
    ck_assert_float_eq(h[32], 0.0f);
    ck_assert_float_eq(h[33], 2.5f);
    ck_assert_int_eq(cae_copy(ctx, a.buf, b.buf, 37), 0);
    tu_download(h, &a);
    ck_assert_float_eq(h[36], 5.0f);
    tu_free(&a);
    tu_free(&b);
}
END_TEST

START_TEST(test_missing_kernel_is_reported)
{
    ck_assert_ptr_null(cae_kernel(tu_ctx(), "no_such_kernel"));
    ck_assert_ptr_nonnull(cae_kernel(tu_ctx(), "fill_float"));
}
END_TEST

START_TEST(test_alloc_limit)
{
    cae_ctx *ctx = tu_ctx();
    cl_mem m = NULL;
    ck_assert_int_eq(cae_alloc(ctx, (size_t)ctx->max_alloc + 4096, &m), -1);
    ck_assert_ptr_null(m);
}
END_TEST

/* Row-major reference in double. */
static void ref_gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                     size_t lda, const float *b, size_t ldb, float beta, const float *c0, size_t ldc,
                     double *out)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
                     (tb ? b[j * ldb + p] : b[p * ldb + j]);
            out[i * n + j] = alpha * s + beta * (double)c0[i * ldc + j];
        }
}

static void gemm_case(int ta, int tb)
{
    enum { M = 13, N = 7, K = 29 };
    size_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
    float a[M * K], b[K * N], c[M * N], got[M * N];
    double want[M * N];
    tu_dbuf da, db, dc;
    tu_random(a, M * K, -1, 1, 1);
    tu_random(b, K * N, -1, 1, 2);
    tu_random(c, M * N, -1, 1, 3);
    ref_gemm(ta, tb, M, N, K, 0.75f, a, lda, b, ldb, 0.5f, c, ldc, want);
    da = tu_upload(a, M * K);
    db = tu_upload(b, K * N);
    dc = tu_upload(c, M * N);
    ck_assert_int_eq(cae_gemm(tu_ctx(), ta, tb, M, N, K, 0.75f, da.buf, lda, db.buf, ldb, 0.5f,
                              dc.buf, ldc), 0);
    tu_download(got, &dc);
    tu_assert_close("gemm", got, want, M * N, 1e-5);
    tu_free(&da);
    tu_free(&db);
    tu_free(&dc);
}

START_TEST(test_gemm_all_transposes)
{
    gemm_case(0, 0);
    gemm_case(1, 0);
    gemm_case(0, 1);
    gemm_case(1, 1);
}
END_TEST

START_TEST(test_gemm_batched)
{
    enum { BATCH = 3, M = 5, N = 6, K = 11 };
    float a[BATCH * M * K], b[BATCH * N * K], c[BATCH * M * N], got[BATCH * M * N];
    double want[BATCH * M * N];
    tu_dbuf da, db, dc;
    tu_random(a, sizeof a / 4, -1, 1, 4);
    tu_random(b, sizeof b / 4, -1, 1, 5);
    tu_random(c, sizeof c / 4, -1, 1, 6);
    for (int i = 0; i < BATCH; i++)
        ref_gemm(0, 1, M, N, K, 1.0f, a + i * M * K, K, b + i * N * K, K, 0.0f, c + i * M * N, N,
                 want + i * M * N);
    da = tu_upload(a, sizeof a / 4);
    db = tu_upload(b, sizeof b / 4);
    dc = tu_upload(c, sizeof c / 4);
    ck_assert_int_eq(cae_gemm_batched(tu_ctx(), 0, 1, M, N, K, 1.0f, da.buf, K, M * K, db.buf, K,
                                      N * K, 0.0f, dc.buf, N, M * N, BATCH), 0);
    tu_download(got, &dc);
    tu_assert_close("batched gemm", got, want, sizeof got / 4, 1e-5);
    tu_free(&da);
    tu_free(&db);
    tu_free(&dc);
}
END_TEST

START_TEST(test_param_table)
{
    cae_config c;
    cae_param_table t;
    const cae_param *p;
    size_t total = 0;
    cae_config_defaults(&c);
    ck_assert_int_eq(cae_config_preset(&c, "cae_base_patch16_224_8k_vocab"), 0);
    c.num_mask_patches = 98;
    ck_assert_int_eq(cae_config_finish(&c), 0);
    ck_assert_int_eq(cae_params_build(&t, &c, (size_t)1 << 30), 0);
    p = cae_params_find(&t, "encoder.blocks.11.attn.qkv.weight");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->shape[0], 3 * 768);
    ck_assert_int_eq(p->decay, 1);
    p = cae_params_find(&t, "encoder.blocks.0.attn.q_bias");
    ck_assert_int_eq(p->decay, 0);
    ck_assert_ptr_nonnull(cae_params_find(&t, "decoder.decoder_blocks.3.gamma_2"));
    ck_assert_ptr_nonnull(cae_params_find(&t, "regresser.regressor_blocks.3.gamma_1_cross"));
    ck_assert_ptr_null(cae_params_find(&t, "encoder_to_regresser.weight"));
    ck_assert_ptr_null(cae_params_find(&t, "encoder.pos_embed"));
    p = cae_params_find(&t, "decoder.head.weight");
    ck_assert_int_eq(p->shape[0], 8192);
    for (size_t i = 0; i < t.n; i++)
        total += t.p[i].numel;
    ck_assert_uint_eq(total, t.total);
    cae_params_free(&t);
    /* layer scale 0: no encoder/decoder gammas, regressor gammas frozen */
    c.layer_scale_init_value = 0;
    c.decoder_layer_scale_init_value = 0;
    c.decoder_embed_dim = 384;
    ck_assert_int_eq(cae_config_finish(&c), 0);
    ck_assert_int_eq(cae_params_build(&t, &c, (size_t)1 << 30), 0);
    ck_assert_ptr_null(cae_params_find(&t, "encoder.blocks.0.gamma_1"));
    ck_assert_ptr_null(cae_params_find(&t, "regresser.regressor_blocks.0.gamma_1_cross"));
    ck_assert_ptr_nonnull(cae_params_find(&t, "encoder_to_regresser_norm.bias"));
    cae_params_free(&t);
}
END_TEST

START_TEST(test_arena_splits)
{
    cae_config c;
    cae_param_table t;
    cae_config_defaults(&c);
    c.num_mask_patches = 98;
    ck_assert_int_eq(cae_config_finish(&c), 0);
    /* 64 MiB buffers: the 8192x768 head (24 MiB) fits, the arena does not */
    ck_assert_int_eq(cae_params_build(&t, &c, (size_t)64 << 20), 0);
    ck_assert_int_gt(t.n_chunks, 1);
    for (size_t i = 0; i < t.n; i++)
        ck_assert_uint_le(t.p[i].off + t.p[i].numel, t.chunk_elems[t.p[i].chunk]);
    cae_params_free(&t);
    /* a tensor bigger than one buffer is refused */
    ck_assert_int_eq(cae_params_build(&t, &c, (size_t)8 << 20), -1);
}
END_TEST

START_TEST(test_device_selection_errors)
{
    cae_ctx other;
    cae_ctx_options opt = {.gemm = CAE_GEMM_AUTO};
    setenv("CAE_CL_DEVICE", "no-such-device-name", 1);
    ck_assert_int_eq(cae_ctx_init(&other, &opt), -1);
    setenv("CAE_CL_DEVICE", "99", 1);
    ck_assert_int_eq(cae_ctx_init(&other, &opt), -1);
    unsetenv("CAE_CL_DEVICE");
}
END_TEST

/* CAE_CL_NATIVE_KERNELS=0 takes the same device as a GPU without native
 * kernels: every default takes its GPU value (--gemm auto is CLBlast, host
 * is refused, fused attention, work-group rows); the explicit overrides
 * still win; 1 is the device as detected, another value an error. (Whatever
 * the caller's environment says: the suite's own context is made by now.) */
START_TEST(test_native_kernels_switch)
{
    cae_ctx dev, gpu, rows;
    memset(&dev, 0, sizeof dev);
    memset(&gpu, 0, sizeof gpu);
    memset(&rows, 0, sizeof rows);
    unsetenv("CAE_CL_ATTENTION");
    unsetenv("CAE_CL_ROW_KERNELS");
    setenv("CAE_CL_NATIVE_KERNELS", "1", 1);
    ck_assert_int_eq(cae_device_open(&dev, 0), 0);
    setenv("CAE_CL_NATIVE_KERNELS", "0", 1);
    ck_assert_int_eq(cae_device_open(&gpu, 0), 0);
    ck_assert_str_eq(gpu.device_name, dev.device_name);
    ck_assert_int_eq(gpu.cpu_defaults, 0);
    ck_assert_int_eq(gpu.native_kernels, 0);
    ck_assert_uint_gt(gpu.row_group, 0);
    ck_assert_int_eq(cae_mha_fused(&gpu), 1);
    ck_assert_int_eq(cae_gemm_resolve(&gpu, CAE_GEMM_AUTO), CAE_GEMM_CLBLAST);
    ck_assert_int_eq(cae_gemm_init(&gpu, CAE_GEMM_HOST), -1);
    setenv("CAE_CL_ROW_KERNELS", "item", 1);
    ck_assert_int_eq(cae_device_open(&rows, 0), 0);
    ck_assert_uint_eq(rows.row_group, 0);
    unsetenv("CAE_CL_ROW_KERNELS");
    setenv("CAE_CL_NATIVE_KERNELS", "2", 1);
    ck_assert_int_eq(cae_device_open(&rows, 0), -1);
    unsetenv("CAE_CL_NATIVE_KERNELS");
}
END_TEST

START_TEST(test_config_validation)
{
    cae_config c;
    cae_config_defaults(&c);
    c.num_mask_patches = 98;
    c.num_heads = 7;
    ck_assert_int_eq(cae_config_finish(&c), -1);
    cae_config_defaults(&c);
    c.num_mask_patches = 196;
    ck_assert_int_eq(cae_config_finish(&c), -1);
    cae_config_defaults(&c);
    ck_assert_int_eq(cae_config_preset(&c, "cae_huge"), -1);
    ck_assert_int_eq(cae_config_preset(&c, "cae_large_patch16_224_8k_vocab"), 0);
    ck_assert_int_eq(c.embed_dim, 1024);
    ck_assert_int_eq(c.depth, 24);
    ck_assert_int_eq(c.num_heads, 16);
}
END_TEST

/* The single .bin entry of a cache folder, or "" */
static void cache_entry(const char *dir, char *out, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    out[0] = '\0';
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".bin") == 0) {
            snprintf(out, size, "%s/%s", dir, e->d_name);
            found++;
        }
        ck_assert_msg(strstr(e->d_name, ".tmp.") == NULL, "temporary file left: %s", e->d_name);
    }
    closedir(d);
    ck_assert_int_le(found, 1);
}

START_TEST(test_kernel_binary_cache)
{
    char dir[] = "/tmp/cae-kcache-XXXXXX", entry[4200];
    cae_ctx c2;
    cae_ctx_options opt = {.gemm = CAE_GEMM_AUTO};
    struct stat st, st2;
    char *err;
    FILE *f;
    int rc;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    unsetenv("CAE_CL_NO_CACHE"); /* whatever the caller's environment says */
    setenv("CAE_CL_CACHE_DIR", dir, 1);
    /* a cold build writes one entry */
    ck_assert_int_eq(cae_ctx_init(&c2, &opt), 0);
    cae_ctx_free(&c2);
    cache_entry(dir, entry, sizeof entry);
    ck_assert_msg(entry[0] != '\0', "no cache entry written");
    /* a warm start uses it and still runs kernels */
    ck_assert_int_eq(cae_ctx_init(&c2, &opt), 0);
    ck_assert_ptr_nonnull(cae_kernel(&c2, "fill_float"));
    cae_ctx_free(&c2);
    /* a truncated entry never reaches the driver: one warning naming it, then
     * it is rebuilt from source and rewritten whole */
    ck_assert_int_eq(stat(entry, &st), 0);
    ck_assert_int_eq(truncate(entry, st.st_size / 2), 0);
    capture_begin(dir);
    rc = cae_ctx_init(&c2, &opt);
    err = capture_end();
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(cae_kernel(&c2, "fill_float"));
    cae_ctx_free(&c2);
    ck_assert_msg(strstr(err, entry) != NULL && strchr(err, '\n') == strrchr(err, '\n'),
                  "expected one warning naming %s, got: %s", entry, err);
    free(err);
    ck_assert_int_eq(stat(entry, &st2), 0);
    ck_assert_int_eq(st2.st_size, st.st_size);
    /* a corrupt entry is ignored, rebuilt from source and replaced */
    f = fopen(entry, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("not a program binary", f);
    fclose(f);
    ck_assert_int_eq(cae_ctx_init(&c2, &opt), 0);
    ck_assert_ptr_nonnull(cae_kernel(&c2, "fill_float"));
    cae_ctx_free(&c2);
    f = fopen(entry, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    ck_assert_int_gt(ftell(f), 100);
    fclose(f);
    /* CAE_CL_NO_CACHE=1: nothing is written */
    unlink(entry);
    setenv("CAE_CL_NO_CACHE", "1", 1);
    ck_assert_int_eq(cae_ctx_init(&c2, &opt), 0);
    cae_ctx_free(&c2);
    cache_entry(dir, entry, sizeof entry);
    ck_assert_str_eq(entry, "");
    unsetenv("CAE_CL_NO_CACHE");
    unsetenv("CAE_CL_CACHE_DIR");
    rmdir(dir);
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tu_tcase(s, "runtime", 300);
    TU_ADD_TESTS(tc, test_fill_and_copy, test_missing_kernel_is_reported, test_alloc_limit,
                 test_gemm_all_transposes, test_gemm_batched, test_param_table, test_arena_splits,
                 test_device_selection_errors, test_native_kernels_switch, test_config_validation, test_kernel_binary_cache);
    return s;
}

TU_MAIN(runtime_suite)

/* testutil.c: the device fixture and buffer helpers of testutil.h. */
#include "testutil.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define CANARY 1234.5f

static cae_ctx the_ctx;
static int have_ctx;

cae_ctx *tu_ctx(void)
{
    if (!have_ctx) {
        cae_ctx_options opt = {.gemm = CAE_GEMM_AUTO};
        const char *g = getenv("CAE_TEST_GEMM");
        if (g && *g)
            ck_assert_msg(cae_gemm_choice_parse(g, &opt.gemm) == 0, "bad CAE_TEST_GEMM=%s", g);
        ck_assert_msg(cae_ctx_init(&the_ctx, &opt) == 0, "no OpenCL context");
        have_ctx = 1;
    }
    return &the_ctx;
}

/* Canaries and data go in one write: oclgrind 21.10 loses track of which
 * bytes are initialized when a second write lands inside a written buffer. */
static tu_dbuf upload_bytes(const void *host, size_t n)
{
    tu_dbuf b;
    size_t total = n + 2 * TU_PAD;
    float *all = malloc(total * sizeof *all);
    ck_assert(all != NULL);
    for (size_t i = 0; i < total; i++)
        all[i] = CANARY;
    memcpy(all + TU_PAD, host, n * 4);
    b.n = n;
    ck_assert(cae_alloc(tu_ctx(), total * 4, &b.mem) == 0);
    b.buf.mem = b.mem;
    b.buf.off = TU_PAD;
    ck_assert(cae_write(tu_ctx(), (cae_buf){b.mem, 0}, all, total * 4) == 0);
    free(all);
    return b;
}

tu_dbuf tu_upload(const float *host, size_t n)
{
    return upload_bytes(host, n);
}

tu_dbuf tu_upload_int(const int *host, size_t n)
{
    return upload_bytes(host, n);
}

tu_dbuf tu_filled(size_t n, float value)
{
    float *host = malloc((n ? n : 1) * sizeof *host);
    tu_dbuf b;
    ck_assert(host != NULL);
    for (size_t i = 0; i < n; i++)
        host[i] = value;
    b = tu_upload(host, n);
    free(host);
    return b;
}

void tu_download(float *host, const tu_dbuf *b)
{
    size_t total = b->n + 2 * TU_PAD;
    float *all = malloc(total * sizeof *all);
    ck_assert(all != NULL);
    ck_assert(cae_read(tu_ctx(), all, (cae_buf){b->mem, 0}, total * 4) == 0);
    for (size_t i = 0; i < TU_PAD; i++) {
        ck_assert_msg(all[i] == CANARY, "canary before the buffer overwritten at -%zu", TU_PAD - i);
        ck_assert_msg(all[TU_PAD + b->n + i] == CANARY, "canary after the buffer overwritten at +%zu", i);
    }
    memcpy(host, all + TU_PAD, b->n * sizeof *host);
    free(all);
}

void tu_free(tu_dbuf *b)
{
    cae_release(&b->mem);
    b->buf.mem = NULL;
}

void tu_expect(const char *what, const tu_dbuf *b, const double *want, double tol)
{
    float *got = tu_fvec(b->n);
    tu_download(got, b);
    tu_assert_close(what, got, want, b->n, tol);
}

void tu_expect_filled(const char *what, const tu_dbuf *b, float value)
{
    float *got = tu_fvec(b->n);
    tu_download(got, b);
    for (size_t i = 0; i < b->n; i++)
        ck_assert_msg(got[i] == value, "%s: element %zu is %.9g, want %.9g", what, i,
                      (double)got[i], (double)value);
}

/* test_ops_finetune.c: fine-tuning's ops (src/ops/finetune.c): the
 * soft-target cross-entropy (loss and gradient; targets that do not sum to
 * one) and the mean pooling of the patch tokens, forward and backward,
 * against double C references. The reference gradient is checked against
 * central finite differences of the reference loss, and the kernel's
 * gradient against central differences of the kernel's loss.
 */
#include "tests/common/testutil.h"

#include "ops/finetune.h"

#include <math.h>
#include <string.h>

static void soft_ce_ref(const double *x, const double *t, size_t R, size_t K, double scale,
                        double *loss, double *dx)
{
    for (size_t r = 0; r < R; r++) {
        double m = x[r * K], se = 0, tsum = 0, l = 0, lse;
        for (size_t k = 1; k < K; k++)
            m = fmax(m, x[r * K + k]);
        for (size_t k = 0; k < K; k++)
            se += exp(x[r * K + k] - m);
        lse = m + log(se);
        for (size_t k = 0; k < K; k++) {
            l += t[r * K + k] * (lse - x[r * K + k]);
            tsum += t[r * K + k];
        }
        loss[r] = l;
        for (size_t k = 0; dx && k < K; k++)
            dx[r * K + k] = scale * (tsum * exp(x[r * K + k] - lse) - t[r * K + k]);
    }
}

/* scale * the sum of the rows' losses */
typedef struct {
    double *x, *t;
    size_t R, K;
    double scale;
} soft_ce_fd;

static double soft_ce_loss(void *state)
{
    soft_ce_fd *f = state;
    double *loss = tu_dvec(f->R), sum = 0;
    soft_ce_ref(f->x, f->t, f->R, f->K, f->scale, loss, NULL);
    for (size_t r = 0; r < f->R; r++)
        sum += loss[r];
    return f->scale * sum;
}

START_TEST(test_soft_ce)
{
    enum { R = 4, K = 7 };
    const double scale = 1.0 / R;
    float *x = tu_frand(R * K, -3, 3, 11), *t = tu_frand(R * K, 0, 1, 12);
    float loss[R], dx[R * K];
    double xd[R * K], td[R * K], lref[R], dref[R * K];
    /* rows sum to 1 except the last (0.8): the gradient's sum_k t term */
    for (size_t r = 0; r < R; r++) {
        double s = 0;
        for (size_t k = 0; k < K; k++)
            s += t[r * K + k];
        for (size_t k = 0; k < K; k++)
            t[r * K + k] = (float)(t[r * K + k] / s * (r == R - 1 ? 0.8 : 1.0));
    }
    for (size_t i = 0; i < R * K; i++) {
        xd[i] = x[i];
        td[i] = t[i];
    }
    soft_ce_ref(xd, td, R, K, scale, lref, dref);
    /* the reference gradient against central differences of the reference */
    for (size_t i = 0; i < R * K; i += 3) {
        soft_ce_fd f = {xd, td, R, K, scale};
        const double fd = tu_fd(soft_ce_loss, &f, xd, i, 1e-6);
        ck_assert_msg(fabs(fd - dref[i]) < 1e-7, "reference gradient %zu: %g vs fd %g", i,
                      dref[i], fd);
    }
    {
        tu_dbuf bx = tu_upload(x, R * K), bt = tu_upload(t, R * K);
        tu_dbuf bl = tu_filled(R, -1), bd = tu_filled(R * K, -1);
        ck_assert_int_eq(cae_soft_cross_entropy(tu_ctx(), bd.buf, bl.buf, bx.buf, bt.buf,
                                                (float)scale, R, K), 0);
        tu_download(loss, &bl);
        tu_download(dx, &bd);
        tu_assert_close("soft CE loss", loss, lref, R, 1e-5);
        tu_assert_close("soft CE gradient", dx, dref, R * K, 1e-5);
        /* the kernel's gradient against central differences of the kernel's loss */
        for (size_t i = 1; i < R * K; i += 5) {
            float xp[R * K], lp[R], lm[R];
            double fd = 0;
            const float h = 1e-2f;
            tu_dbuf bxp;
            memcpy(xp, x, sizeof xp);
            xp[i] += h;
            bxp = tu_upload(xp, R * K);
            ck_assert_int_eq(cae_soft_cross_entropy(tu_ctx(), cae_buf_null(), bl.buf, bxp.buf,
                                                    bt.buf, 1.0f, R, K), 0);
            tu_download(lp, &bl);
            tu_free(&bxp);
            xp[i] -= 2 * h;
            bxp = tu_upload(xp, R * K);
            ck_assert_int_eq(cae_soft_cross_entropy(tu_ctx(), cae_buf_null(), bl.buf, bxp.buf,
                                                    bt.buf, 1.0f, R, K), 0);
            tu_download(lm, &bl);
            tu_free(&bxp);
            for (size_t r = 0; r < R; r++)
                fd += scale * ((double)lp[r] - lm[r]) / (2.0 * h);
            ck_assert_msg(fabs(fd - dx[i]) < 2e-3, "kernel gradient %zu: %g vs fd %g", i,
                          (double)dx[i], fd);
        }
        tu_free(&bx);
        tu_free(&bt);
        tu_free(&bl);
        tu_free(&bd);
    }
}
END_TEST

/* mean pooling of the patch tokens (the cls token at row 0 is left out) */

START_TEST(test_mean_pool)
{
    enum { B = 3, N = 5, C = 6 };
    float *x = tu_frand(B * (N + 1) * C, -2, 2, 21), *dout = tu_frand(B * C, -1, 1, 22);
    float y[B * C], dx[B * (N + 1) * C];
    double yref[B * C], dref[B * (N + 1) * C];
    tu_dbuf bx = tu_upload(x, B * (N + 1) * C), bdo = tu_upload(dout, B * C);
    tu_dbuf by = tu_filled(B * C, -7), bdx = tu_filled(B * (N + 1) * C, -7);
    for (size_t b = 0; b < B; b++) {
        for (size_t c = 0; c < C; c++) {
            double s = 0;
            for (size_t n = 1; n <= N; n++)
                s += x[(b * (N + 1) + n) * C + c];
            yref[b * C + c] = s / N;
            for (size_t n = 0; n <= N; n++)
                dref[(b * (N + 1) + n) * C + c] = n == 0 ? 0.0 : (double)dout[b * C + c] / N;
        }
    }
    ck_assert_int_eq(cae_mean_pool_forward(tu_ctx(), by.buf, bx.buf, B, N, C), 0);
    ck_assert_int_eq(cae_mean_pool_backward(tu_ctx(), bdx.buf, bdo.buf, B, N, C), 0);
    tu_download(y, &by);
    tu_download(dx, &bdx);
    tu_assert_close("mean pool", y, yref, B * C, 1e-6);
    tu_assert_close("mean pool backward", dx, dref, B * (N + 1) * C, 1e-6);
    tu_free(&bx);
    tu_free(&bdo);
    tu_free(&by);
    tu_free(&bdx);
}
END_TEST

static Suite *ops_finetune_suite(void)
{
    Suite *s = suite_create("ops_finetune");
    TCase *tc = tu_tcase(s, "ops", 300); /* a cold PoCL compile is slow */
    TU_ADD_TESTS(tc, test_soft_ce, test_mean_pool);
    return s;
}

TU_MAIN(ops_finetune_suite)

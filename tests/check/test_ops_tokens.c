/* test_ops_tokens.c: the token movers (src/ops/tokens.c): gather (per
 * sample and from one shared table) and its gradient the scatter-add, block
 * copies, the row broadcast and patchify, against plain C replicas.
 *
 * Moves are exact, so results are compared bit for bit; buffers sit at a
 * non-zero offset between canaries; indices outside the source give NaN rows
 * (gather, patchify) or are skipped (scatter-add), never a stray access. The
 * reference scatter-add is checked once against central finite differences
 * of the reference gather.
 */
#include "tests/common/testutil.h"

#include "ops/ops.h"

#include <math.h>
#include <string.h>

/* J distinct values in [0, rows) per sample (a partial Fisher-Yates) */
static int *unique_idx(size_t B, size_t J, size_t rows, unsigned seed)
{
    int *idx = tu_ivec(B * J), *perm = tu_ivec(rows);
    for (size_t b = 0; b < B; b++) {
        for (size_t r = 0; r < rows; r++)
            perm[r] = (int)r;
        for (size_t j = 0; j < J; j++) {
            size_t k = j + tu_next_u(&seed) % (rows - j);
            int t = perm[j];
            perm[j] = perm[k];
            perm[k] = t;
            idx[b * J + j] = perm[j];
        }
    }
    return idx;
}

/* out[b,j,:] = src[b*src_rows + idx[b,j], :] in double */
static void ref_gather(double *out, const double *src, size_t src_rows,
                       const int *idx, size_t B, size_t J, size_t C)
{
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < J; j++)
            for (size_t c = 0; c < C; c++)
                out[(b * J + j) * C + c] =
                    src[(b * src_rows + (size_t)idx[b * J + j]) * C + c];
}

/* run one gather (both modes) and compare exactly with a float replica */
static void check_gather(size_t src_rows, size_t table_rows, const int *idx,
                         size_t B, size_t J, size_t C)
{
    const size_t no = B * J * C, ns = table_rows * C;
    float *src = tu_frand(ns, -1.0f, 1.0f, 61), *init = tu_frand(no, -1.0f, 1.0f, 62);
    float *got = tu_fvec(no), *want = tu_fvec(no);
    tu_dbuf ds = tu_upload(src, ns), di = tu_upload_int(idx, B * J);
    for (int acc = 0; acc <= 1; acc++) {
        tu_dbuf dout = tu_upload(init, no);
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < J; j++)
                for (size_t c = 0; c < C; c++) {
                    const size_t o = (b * J + j) * C + c;
                    const float v = src[(b * src_rows + (size_t)idx[b * J + j]) * C + c];
                    want[o] = acc ? init[o] + v : v;
                }
        ck_assert_int_eq(cae_gather_rows(tu_ctx(), dout.buf, ds.buf, src_rows,
                                         di.buf, B, J, C, acc), 0);
        tu_download(got, &dout);
        tu_assert_equal_f(acc ? "gather +=" : "gather =", got, want, no);
        tu_free(&dout);
    }
    tu_free(&ds);
    tu_free(&di);
}

START_TEST(test_gather)
{
    const size_t B = 3, J = 5, C = 29, src_rows = 11;
    int *idx = unique_idx(B, J, src_rows, 7);
    check_gather(src_rows, B * src_rows, idx, B, J, C);
}
END_TEST

START_TEST(test_gather_shared)
{
    /* src_rows 0: one table of 17 rows serves every sample; repeats allowed */
    const size_t B = 3, J = 7, C = 29, rows = 17;
    int *idx = tu_ivec(B * J);
    unsigned s = 9;
    for (size_t i = 0; i < B * J; i++)
        idx[i] = (int)(tu_next_u(&s) % rows);
    idx[0] = idx[1] = 16;
    check_gather(0, rows, idx, B, J, C);
}
END_TEST

START_TEST(test_gather_bad_index)
{
    /* an index outside the source yields a NaN row in a gather and is
     * skipped by the scatter-add, never a stray read or write */
    enum { B = 2, J = 3, C = 5, ROWS = 4, NS = B * ROWS * C, NO = B * J * C };
    const int idx[B * J] = {0, -1, 3, 4, 2, 1};
    float *src = tu_frand(NS, -1.0f, 1.0f, 63), got[NS], want[NS];
    tu_dbuf ds = tu_upload(src, NS), di = tu_upload_int(idx, B * J);
    tu_dbuf dout = tu_filled(NO, 0.0f);
    ck_assert_int_eq(cae_gather_rows(tu_ctx(), dout.buf, ds.buf, ROWS, di.buf,
                                     B, J, C, 0), 0);
    tu_download(got, &dout);
    for (int r = 0; r < B * J; r++)
        for (int c = 0; c < C; c++) {
            const int bad = idx[r] < 0 || idx[r] >= ROWS;
            ck_assert_msg(bad == !!isnan(got[r * C + c]), "row %d col %d", r, c);
        }

    tu_free(&dout);
    dout = tu_filled(NO, 2.0f);
    memcpy(want, src, sizeof want);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++) {
            const int n = idx[b * J + j];
            if (n >= 0 && n < ROWS)
                for (int c = 0; c < C; c++)
                    want[(b * ROWS + n) * C + c] += 2.0f;
        }
    ck_assert_int_eq(cae_scatter_rows_add(tu_ctx(), ds.buf, ROWS, dout.buf,
                                          di.buf, B, J, C), 0);
    tu_download(got, &ds);
    tu_assert_equal_f("scatter with bad indices", got, want, NS);
    tu_free(&ds);
    tu_free(&di);
    tu_free(&dout);
}
END_TEST

START_TEST(test_scatter_add)
{
    const size_t B = 3, J = 5, C = 29, src_rows = 11;
    const size_t ns = B * src_rows * C, no = B * J * C;
    int *idx = unique_idx(B, J, src_rows, 8);
    float *init = tu_frand(ns, -1.0f, 1.0f, 64), *dout = tu_frand(no, -1.0f, 1.0f, 65);
    float *got = tu_fvec(ns), *want = tu_fvec(ns);
    tu_dbuf dsrc = tu_upload(init, ns), dd = tu_upload(dout, no);
    tu_dbuf di = tu_upload_int(idx, B * J);
    memcpy(want, init, ns * sizeof *want);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < J; j++)
            for (size_t c = 0; c < C; c++)
                want[(b * src_rows + (size_t)idx[b * J + j]) * C + c] +=
                    dout[(b * J + j) * C + c];
    ck_assert_int_eq(cae_scatter_rows_add(tu_ctx(), dsrc.buf, src_rows, dd.buf,
                                          di.buf, B, J, C), 0);
    tu_download(got, &dsrc);
    tu_assert_equal_f("scatter +=", got, want, ns);
    ck_assert_int_eq(cae_scatter_rows_add(tu_ctx(), dsrc.buf, 0, dd.buf, di.buf,
                                          B, J, C), -1);
    tu_free(&dsrc);
    tu_free(&dd);
    tu_free(&di);
}
END_TEST

/* sum w * gather(src) */
typedef struct {
    double *w, *src, *out;
    const int *idx;
    size_t src_rows, B, J, C;
} gather_fd;

static double gather_loss(void *state)
{
    gather_fd *s = state;
    ref_gather(s->out, s->src, s->src_rows, s->idx, s->B, s->J, s->C);
    return tu_dot(s->w, s->out, s->B * s->J * s->C);
}

START_TEST(test_gather_fd)
{
    /* scatter-add is the gradient of gather: check the reference pair on
     * L(src) = sum w * gather(src) */
    const size_t B = 2, J = 3, C = 4, src_rows = 5, ns = B * src_rows * C;
    const size_t no = B * J * C;
    int *idx = unique_idx(B, J, src_rows, 4);
    gather_fd s = {tu_to_double(tu_frand(no, -1.0f, 1.0f, 66), no),
                   tu_to_double(tu_frand(ns, -1.0f, 1.0f, 67), ns), tu_dvec(no), idx,
                   src_rows, B, J, C};
    double *g = tu_dvec(ns), *fd = tu_dvec(ns);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < J; j++)
            for (size_t c = 0; c < C; c++)
                g[(b * src_rows + (size_t)idx[b * J + j]) * C + c] +=
                    s.w[(b * J + j) * C + c];
    tu_fd_grad(fd, gather_loss, &s, s.src, ns);
    tu_assert_close_d("scatter reference vs fd of gather", g, fd, ns, 1e-8);
}
END_TEST

START_TEST(test_copy_blocks)
{
    const size_t B = 4, n = 23, dst_stride = 31, src_stride = 27;
    const size_t nd = B * dst_stride, ns = B * src_stride;
    float *src = tu_frand(ns, -1.0f, 1.0f, 71), *init = tu_frand(nd, -1.0f, 1.0f, 72);
    float *got = tu_fvec(nd), *want = tu_fvec(nd);
    tu_dbuf ds = tu_upload(src, ns);
    for (int acc = 0; acc <= 1; acc++) {
        tu_dbuf dd = tu_upload(init, nd);
        memcpy(want, init, nd * sizeof *want); /* the gaps stay as they were */
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < n; i++) {
                const float v = src[b * src_stride + i];
                want[b * dst_stride + i] = acc ? init[b * dst_stride + i] + v : v;
            }
        ck_assert_int_eq(cae_copy_blocks(tu_ctx(), dd.buf, dst_stride, ds.buf,
                                         src_stride, B, n, acc), 0);
        tu_download(got, &dd);
        tu_assert_equal_f(acc ? "copy_blocks +=" : "copy_blocks =", got, want, nd);
        tu_free(&dd);
    }
    tu_free(&ds);
}
END_TEST

START_TEST(test_broadcast_row)
{
    const size_t R = 37, C = 29;
    float *row = tu_frand(C, -1.0f, 1.0f, 73), *got = tu_fvec(R * C);
    float *want = tu_fvec(R * C);
    tu_dbuf dr = tu_upload(row, C), dout = tu_filled(R * C, 7.0f);
    for (size_t r = 0; r < R; r++)
        memcpy(want + r * C, row, C * sizeof *row);
    ck_assert_int_eq(cae_broadcast_row(tu_ctx(), dout.buf, dr.buf, R, C), 0);
    tu_download(got, &dout);
    tu_assert_equal_f("broadcast_row", got, want, R * C);
    tu_free(&dr);
    tu_free(&dout);
}
END_TEST

START_TEST(test_patchify)
{
    /* S=12, P=4: a 3x3 grid; the indices are out of raster order and skip
     * patches. Each extracted patch, dotted with a flattened conv weight
     * [D,3,P,P], must equal that stride-P convolution at the patch. */
    enum { B = 2, J = 5, S = 12, P = 4, G = S / P, D = 7, E = 3 * P * P };
    const int idx[B * J] = {7, 0, 4, 8, 2, 5, 1, 6, 3, 8};
    float *img = tu_frand((size_t)B * 3 * S * S, -1.0f, 1.0f, 81);
    float *w = tu_frand((size_t)D * E, -1.0f, 1.0f, 82);
    float *got = tu_fvec((size_t)B * J * E), *want = tu_fvec((size_t)B * J * E);
    tu_dbuf dimg = tu_upload(img, (size_t)B * 3 * S * S);
    tu_dbuf di = tu_upload_int(idx, B * J), dout = tu_filled((size_t)B * J * E, 7.0f);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++)
            for (int c = 0; c < 3; c++)
                for (int py = 0; py < P; py++)
                    for (int px = 0; px < P; px++) {
                        const int n = idx[b * J + j], gy = n / G, gx = n % G;
                        want[((b * J + j) * 3 + c) * P * P + py * P + px] =
                            img[((b * 3 + c) * S + gy * P + py) * S + gx * P + px];
                    }
    ck_assert_int_eq(cae_patchify(tu_ctx(), dout.buf, dimg.buf, di.buf, B, J,
                                  S, P), 0);
    tu_download(got, &dout);
    tu_assert_equal_f("patchify", got, want, (size_t)B * J * E);

    for (int b = 0; b < B; b++)
        for (int j = 0; j < J; j++)
            for (int d = 0; d < D; d++) {
                const int n = idx[b * J + j], oy = (n / G) * P, ox = (n % G) * P;
                double conv = 0.0, dot = 0.0;
                /* the convolution, written over image coordinates */
                for (int c = 0; c < 3; c++)
                    for (int y = oy; y < oy + P; y++)
                        for (int x = ox; x < ox + P; x++)
                            conv += (double)w[((d * 3 + c) * P + (y - oy)) * P + (x - ox)] *
                                    img[((b * 3 + c) * S + y) * S + x];
                for (int e = 0; e < E; e++)
                    dot += (double)w[d * E + e] * got[(b * J + j) * E + e];
                ck_assert_msg(fabs(conv - dot) <= 1e-12,
                              "patch %d of sample %d, channel %d: %g vs %g", j,
                              b, d, dot, conv);
            }

    ck_assert_int_eq(cae_patchify(tu_ctx(), dout.buf, dimg.buf, di.buf, B, J,
                                  13, P), -1);
    tu_free(&dimg);
    tu_free(&di);
    tu_free(&dout);
}
END_TEST

START_TEST(test_patchify_bad_index)
{
    enum { S = 8, P = 4, E = 3 * P * P };
    const int idx[3] = {3, 4, -1}; /* a 2x2 grid: 4 and -1 are outside */
    float *img = tu_frand(3 * S * S, -1.0f, 1.0f, 83), got[3 * E];
    tu_dbuf dimg = tu_upload(img, 3 * S * S), di = tu_upload_int(idx, 3);
    tu_dbuf dout = tu_filled(3 * E, 0.0f);
    ck_assert_int_eq(cae_patchify(tu_ctx(), dout.buf, dimg.buf, di.buf, 1, 3,
                                  S, P), 0);
    tu_download(got, &dout);
    for (int e = 0; e < E; e++) {
        ck_assert(!isnan(got[e]));
        ck_assert(isnan(got[E + e]) && isnan(got[2 * E + e]));
    }
    tu_free(&dimg);
    tu_free(&di);
    tu_free(&dout);
}
END_TEST

static Suite *ops_tokens_suite(void)
{
    Suite *s = suite_create("ops_tokens");
    TCase *tc = tu_tcase(s, "tokens", 120); /* a cold PoCL compile is slow */
    TU_ADD_TESTS(tc, test_gather, test_gather_shared, test_gather_bad_index, test_scatter_add,
                 test_gather_fd, test_copy_blocks, test_broadcast_row, test_patchify,
                 test_patchify_bad_index);
    return s;
}

TU_MAIN(ops_tokens_suite)

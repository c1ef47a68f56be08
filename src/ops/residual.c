/* residual.c: the residual stream x += g * s * y with optional layer scale g
 * and per-sample drop-path scale s, and a plain elementwise add; kernels in
 * cl/residual.cl.
 *
 * The forward accumulates into x by definition. The backward overwrites dy
 * (the branch gradient) and accumulates the layer-scale gradient dg (+=);
 * the stream's own gradient dx passes through unchanged, so the caller keeps
 * using it.
 */
#include "ops/ops.h"

/* One of the elementwise kernels on (a, b) with their shared (g, s, T, C,
 * rows_per_sample) tail, over T*C; an absent buffer goes with a 0 flag. */
static int residual_elementwise(cae_ctx *ctx, cae_kernel_id id, cae_buf a, cae_buf b, cae_buf g,
                                cae_buf s, size_t T, size_t C, size_t rows_per_sample)
{
    return cae_run_1d(ctx, id, T * C,
                      CAE_ARGS(CAE_BUF(a), CAE_BUF(b), CAE_BUF(g), CAE_INT(g.mem != NULL),
                               CAE_BUF(s), CAE_INT(s.mem != NULL), CAE_ULONG(T), CAE_ULONG(C),
                               CAE_ULONG(rows_per_sample)));
}

/* rows_per_sample only matters with s, but then it divides row indices. */
static int residual_check_rps(cae_buf s, size_t rows_per_sample)
{
    if (s.mem != NULL && rows_per_sample == 0) {
        cae_errorf("residual: rows_per_sample is 0 with a drop-path scale "
                   "(%s:%d)", __FILE__, __LINE__);
        return -1;
    }
    return 0;
}

int cae_residual_forward(cae_ctx *ctx, cae_buf x /* [T,C] */,
                         cae_buf y /* [T,C] */, cae_buf g /* [C] */,
                         cae_buf s /* [T/rows_per_sample] */, size_t T,
                         size_t C, size_t rows_per_sample)
{
    CAE_TRY(residual_check_rps(s, rows_per_sample));
    if (T == 0 || C == 0)
        return 0;
    return residual_elementwise(ctx, CAE_K_residual_forward, x, y, g, s, T, C, rows_per_sample);
}

int cae_residual_backward(cae_ctx *ctx, cae_buf dy /* [T,C] */,
                          cae_buf dg /* [C] */, cae_buf dx /* [T,C] */,
                          cae_buf y /* [T,C] */, cae_buf g /* [C] */,
                          cae_buf s /* [T/rows_per_sample] */, size_t T,
                          size_t C, size_t rows_per_sample)
{
    CAE_TRY(residual_check_rps(s, rows_per_sample));
    /* dg is the gradient of g; without g there is nothing it could mean */
    if (dg.mem != NULL && g.mem == NULL) {
        cae_errorf("residual: dg given without a layer scale g (%s:%d)",
                   __FILE__, __LINE__);
        return -1;
    }
    if (T == 0 || C == 0)
        return 0;
    /* dg first: it reads dx, which a caller may alias with dy. A frozen g
     * (the regressor's fixed ones) comes without dg and gets no gradient. */
    if (dg.mem != NULL)
        CAE_TRY(cae_run_1d(ctx, CAE_K_residual_backward_dg, C, /* one work-item per column */
                           CAE_ARGS(CAE_BUF(dg), CAE_BUF(dx), CAE_BUF(y), CAE_BUF(s),
                                    CAE_INT(s.mem != NULL), CAE_ULONG(T), CAE_ULONG(C),
                                    CAE_ULONG(rows_per_sample))));
    return residual_elementwise(ctx, CAE_K_residual_backward_dy, dy, dx, g, s, T, C, rows_per_sample);
}

int cae_add(cae_ctx *ctx, cae_buf out /* [n] */, cae_buf a /* [n] */,
            cae_buf b /* [n] */, size_t n)
{
    if (n == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_residual_add, n,
                      CAE_ARGS(CAE_BUF(out), CAE_BUF(a), CAE_BUF(b), CAE_ULONG(n)));
}

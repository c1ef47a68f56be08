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

/* Bind the shared (g, s, T, C, rows_per_sample) tail of the elementwise
 * kernels; an absent buffer goes with a 0 flag. */
static int residual_scale_args(cl_kernel k, cl_uint *i, cae_buf g, cae_buf s,
                               size_t T, size_t C, size_t rows_per_sample)
{
    CAE_TRY(cae_arg_buf(k, i, g));
    CAE_TRY(cae_arg_int(k, i, g.mem != NULL));
    CAE_TRY(cae_arg_buf(k, i, s));
    CAE_TRY(cae_arg_int(k, i, s.mem != NULL));
    CAE_TRY(cae_arg_ulong(k, i, T));
    CAE_TRY(cae_arg_ulong(k, i, C));
    CAE_TRY(cae_arg_ulong(k, i, rows_per_sample));
    return 0;
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
    cl_kernel k = cae_kernel(ctx, "residual_forward");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, x));
    CAE_TRY(cae_arg_buf(k, &i, y));
    CAE_TRY(residual_scale_args(k, &i, g, s, T, C, rows_per_sample));
    return cae_launch_1d(ctx, k, T * C);
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
    cl_kernel k;
    cl_uint i = 0;
    /* dg first: it reads dx, which a caller may alias with dy. A frozen g
     * (the regressor's fixed ones) comes without dg and gets no gradient. */
    if (dg.mem != NULL) {
        k = cae_kernel(ctx, "residual_backward_dg");
        if (!k)
            return -1;
        CAE_TRY(cae_arg_buf(k, &i, dg));
        CAE_TRY(cae_arg_buf(k, &i, dx));
        CAE_TRY(cae_arg_buf(k, &i, y));
        CAE_TRY(cae_arg_buf(k, &i, s));
        CAE_TRY(cae_arg_int(k, &i, s.mem != NULL));
        CAE_TRY(cae_arg_ulong(k, &i, T));
        CAE_TRY(cae_arg_ulong(k, &i, C));
        CAE_TRY(cae_arg_ulong(k, &i, rows_per_sample));
        CAE_TRY(cae_launch_1d(ctx, k, C)); /* one work-item per column */
    }
    k = cae_kernel(ctx, "residual_backward_dy");
    if (!k)
        return -1;
    i = 0;
    CAE_TRY(cae_arg_buf(k, &i, dy));
    CAE_TRY(cae_arg_buf(k, &i, dx));
    CAE_TRY(residual_scale_args(k, &i, g, s, T, C, rows_per_sample));
    return cae_launch_1d(ctx, k, T * C);
}

int cae_add(cae_ctx *ctx, cae_buf out /* [n] */, cae_buf a /* [n] */,
            cae_buf b /* [n] */, size_t n)
{
    if (n == 0)
        return 0;
    cl_kernel k = cae_kernel(ctx, "residual_add");
    if (!k)
        return -1;
    cl_uint i = 0;
    CAE_TRY(cae_arg_buf(k, &i, out));
    CAE_TRY(cae_arg_buf(k, &i, a));
    CAE_TRY(cae_arg_buf(k, &i, b));
    CAE_TRY(cae_arg_ulong(k, &i, n));
    return cae_launch_1d(ctx, k, n);
}

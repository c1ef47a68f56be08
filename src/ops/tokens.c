/* tokens.c: moving token rows around: gather (and its scatter-add
 * backward), strided block copies, row broadcast and patch extraction.
 *
 * cae_gather_rows and cae_copy_blocks overwrite (=) or accumulate (+=) by
 * their flag; cae_scatter_rows_add always accumulates (it is a gradient);
 * cae_broadcast_row and cae_patchify overwrite. An index outside the source
 * yields NaN in a gather or patchify output and is skipped by the scatter.
 * Kernels: cl/tokens.cl, one work-item per output element.
 */
#include "ops/ops.h"

int cae_gather_rows(cae_ctx *ctx, cae_buf out /* [B,J,C] */,
                    cae_buf src /* [B*src_rows, C] or [rows, C] */,
                    size_t src_rows, cae_buf idx /* int [B,J] */, size_t B,
                    size_t J, size_t C, int accumulate)
{
    cl_kernel k;
    cl_uint a = 0;
    const size_t total = B * J * C;

    if (total == 0)
        return 0;
    if (!(k = cae_kernel(ctx, "tokens_gather")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, out));
    CAE_TRY(cae_arg_buf(k, &a, src));
    CAE_TRY(cae_arg_buf(k, &a, idx));
    CAE_TRY(cae_arg_ulong(k, &a, src_rows));
    CAE_TRY(cae_arg_ulong(k, &a, J));
    CAE_TRY(cae_arg_ulong(k, &a, C));
    CAE_TRY(cae_arg_ulong(k, &a, total));
    CAE_TRY(cae_arg_int(k, &a, accumulate != 0));
    return cae_launch_1d(ctx, k, total);
}

int cae_scatter_rows_add(cae_ctx *ctx, cae_buf dsrc /* [B*src_rows, C] */,
                         size_t src_rows, cae_buf dout /* [B,J,C] */,
                         cae_buf idx /* int [B,J] */, size_t B, size_t J,
                         size_t C)
{
    cl_kernel k;
    cl_uint a = 0;
    const size_t total = B * J * C;

    if (total == 0)
        return 0;
    /* a shared table (src_rows 0) would make samples collide */
    if (src_rows == 0) {
        cae_errorf("cae_scatter_rows_add: src_rows must be > 0");
        return -1;
    }
    if (!(k = cae_kernel(ctx, "tokens_scatter_add")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, dsrc));
    CAE_TRY(cae_arg_buf(k, &a, dout));
    CAE_TRY(cae_arg_buf(k, &a, idx));
    CAE_TRY(cae_arg_ulong(k, &a, src_rows));
    CAE_TRY(cae_arg_ulong(k, &a, J));
    CAE_TRY(cae_arg_ulong(k, &a, C));
    CAE_TRY(cae_arg_ulong(k, &a, total));
    return cae_launch_1d(ctx, k, total);
}

int cae_copy_blocks(cae_ctx *ctx, cae_buf dst /* [B, dst_stride] */,
                    size_t dst_stride, cae_buf src /* [B, src_stride] */,
                    size_t src_stride, size_t B, size_t n, int accumulate)
{
    cl_kernel k;
    cl_uint a = 0;
    const size_t total = B * n;

    if (total == 0)
        return 0;
    if (B > 1 && (dst_stride < n || src_stride < n)) {
        cae_errorf("cae_copy_blocks: strides %zu, %zu shorter than the block "
                   "(%zu)", dst_stride, src_stride, n);
        return -1;
    }
    if (!(k = cae_kernel(ctx, "tokens_copy_blocks")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, dst));
    CAE_TRY(cae_arg_ulong(k, &a, dst_stride));
    CAE_TRY(cae_arg_buf(k, &a, src));
    CAE_TRY(cae_arg_ulong(k, &a, src_stride));
    CAE_TRY(cae_arg_ulong(k, &a, n));
    CAE_TRY(cae_arg_ulong(k, &a, total));
    CAE_TRY(cae_arg_int(k, &a, accumulate != 0));
    return cae_launch_1d(ctx, k, total);
}

int cae_broadcast_row(cae_ctx *ctx, cae_buf out /* [R,C] */,
                      cae_buf row /* [C] */, size_t R, size_t C)
{
    cl_kernel k;
    cl_uint a = 0;
    const size_t total = R * C;

    if (total == 0)
        return 0;
    if (!(k = cae_kernel(ctx, "tokens_broadcast_row")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, out));
    CAE_TRY(cae_arg_buf(k, &a, row));
    CAE_TRY(cae_arg_ulong(k, &a, C));
    CAE_TRY(cae_arg_ulong(k, &a, total));
    return cae_launch_1d(ctx, k, total);
}

int cae_patchify(cae_ctx *ctx, cae_buf out /* [B,J,3*P*P] */,
                 cae_buf img /* [B,3,S,S] */, cae_buf idx /* int [B,J] */,
                 size_t B, size_t J, size_t S, size_t P)
{
    cl_kernel k;
    cl_uint a = 0;
    const size_t total = B * J * 3 * P * P;

    if (P == 0 || S % P != 0) {
        cae_errorf("cae_patchify: image size %zu is not a multiple of the "
                   "patch size %zu", S, P);
        return -1;
    }
    if (total == 0)
        return 0;
    if (!(k = cae_kernel(ctx, "tokens_patchify")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, out));
    CAE_TRY(cae_arg_buf(k, &a, img));
    CAE_TRY(cae_arg_buf(k, &a, idx));
    CAE_TRY(cae_arg_ulong(k, &a, J));
    CAE_TRY(cae_arg_ulong(k, &a, S));
    CAE_TRY(cae_arg_ulong(k, &a, P));
    CAE_TRY(cae_arg_ulong(k, &a, total));
    return cae_launch_1d(ctx, k, total);
}

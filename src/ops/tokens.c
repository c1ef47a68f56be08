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
                    size_t J, size_t C, cae_accum accumulate)
{
    const size_t total = B * J * C;

    if (total == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_tokens_gather, total,
                      CAE_ARGS(CAE_BUF(out), CAE_BUF(src), CAE_BUF(idx), CAE_ULONG(src_rows),
                               CAE_ULONG(J), CAE_ULONG(C), CAE_ULONG(total),
                               CAE_INT(accumulate != CAE_OVERWRITE)));
}

int cae_scatter_rows_add(cae_ctx *ctx, cae_buf dsrc /* [B*src_rows, C] */,
                         size_t src_rows, cae_buf dout /* [B,J,C] */,
                         cae_buf idx /* int [B,J] */, size_t B, size_t J,
                         size_t C)
{
    const size_t total = B * J * C;

    if (total == 0)
        return 0;
    /* a shared table (src_rows 0) would make samples collide */
    if (src_rows == 0) {
        cae_errorf("cae_scatter_rows_add: src_rows must be > 0");
        return -1;
    }
    return cae_run_1d(ctx, CAE_K_tokens_scatter_add, total,
                      CAE_ARGS(CAE_BUF(dsrc), CAE_BUF(dout), CAE_BUF(idx), CAE_ULONG(src_rows),
                               CAE_ULONG(J), CAE_ULONG(C), CAE_ULONG(total)));
}

int cae_copy_blocks(cae_ctx *ctx, cae_buf dst /* [B, dst_stride] */,
                    size_t dst_stride, cae_buf src /* [B, src_stride] */,
                    size_t src_stride, size_t B, size_t n, cae_accum accumulate)
{
    const size_t total = B * n;

    if (total == 0)
        return 0;
    if (B > 1 && (dst_stride < n || src_stride < n)) {
        cae_errorf("cae_copy_blocks: strides %zu, %zu shorter than the block "
                   "(%zu)", dst_stride, src_stride, n);
        return -1;
    }
    return cae_run_1d(ctx, CAE_K_tokens_copy_blocks, total,
                      CAE_ARGS(CAE_BUF(dst), CAE_ULONG(dst_stride), CAE_BUF(src),
                               CAE_ULONG(src_stride), CAE_ULONG(n), CAE_ULONG(total),
                               CAE_INT(accumulate != CAE_OVERWRITE)));
}

int cae_broadcast_row(cae_ctx *ctx, cae_buf out /* [R,C] */,
                      cae_buf row /* [C] */, size_t R, size_t C)
{
    const size_t total = R * C;

    if (total == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_tokens_broadcast_row, total,
                      CAE_ARGS(CAE_BUF(out), CAE_BUF(row), CAE_ULONG(C), CAE_ULONG(total)));
}

int cae_patchify(cae_ctx *ctx, cae_buf out /* [B,J,3*P*P] */,
                 cae_buf img /* [B,3,S,S] */, cae_buf idx /* int [B,J] */,
                 size_t B, size_t J, size_t S, size_t P)
{
    const size_t total = B * J * 3 * P * P;

    if (P == 0 || S % P != 0) {
        cae_errorf("cae_patchify: image size %zu is not a multiple of the "
                   "patch size %zu", S, P);
        return -1;
    }
    if (total == 0)
        return 0;
    return cae_run_1d(ctx, CAE_K_tokens_patchify, total,
                      CAE_ARGS(CAE_BUF(out), CAE_BUF(img), CAE_BUF(idx), CAE_ULONG(J), CAE_ULONG(S),
                               CAE_ULONG(P), CAE_ULONG(total)));
}

/* reduce.c: deterministic sums of a vector into one float, and scaling.
 *
 * Two passes without work-group reductions: pass 1 gives each of `chunks`
 * work-items one contiguous chunk of the input to sum sequentially into
 * scratch; pass 2 is a single work-item summing the partials into out[0].
 * The chunking depends on n alone, so every device adds the same numbers in
 * the same order and returns the same float. out is overwritten (=).
 * Kernels: cl/reduce.cl.
 */
#include "ops/ops.h"

#define REDUCE_CHUNK 4096        /* target elements per pass-1 work-item */
#define REDUCE_MAX_CHUNKS 16384  /* beyond this, chunks grow instead */

/* chunks (>= 1) and their length (>= 1); every chunk holds an element */
static void reduce_layout(size_t n, size_t *chunks, size_t *chunk_len)
{
    size_t c = n / REDUCE_CHUNK + (n % REDUCE_CHUNK != 0);
    size_t len;

    if (c > REDUCE_MAX_CHUNKS)
        c = REDUCE_MAX_CHUNKS;
    if (c == 0)
        c = 1;
    len = n / c + (n % c != 0);
    if (len == 0)
        len = 1;
    /* rounding len up can leave trailing chunks empty: drop them */
    c = n / len + (n % len != 0);
    *chunks = c == 0 ? 1 : c;
    *chunk_len = len;
}

size_t cae_reduce_scratch_elems(size_t n)
{
    size_t chunks, len;

    reduce_layout(n, &chunks, &len);
    return chunks;
}

/* the shared body of cae_sum and cae_sum_squares */
static int reduce_sum(cae_ctx *ctx, cae_buf out, cae_buf in, size_t n,
                      cae_buf scratch, int squares)
{
    size_t chunks, len;

    if (!out.mem || (n > 0 && (!in.mem || !scratch.mem))) {
        cae_errorf("cae_sum: out, in and scratch must be present");
        return -1;
    }
    if (n == 0)
        return cae_fill_zero(ctx, out, 1);
    reduce_layout(n, &chunks, &len);

    CAE_TRY(cae_run_1d(ctx, CAE_K_reduce_partial, chunks,
                       CAE_ARGS(CAE_BUF(scratch), CAE_BUF(in), CAE_ULONG(n), CAE_ULONG(len),
                                CAE_ULONG(chunks), CAE_INT(squares))));
    return cae_run_1d(ctx, CAE_K_reduce_final, 1,
                      CAE_ARGS(CAE_BUF(out), CAE_BUF(scratch), CAE_ULONG(chunks)));
}

int cae_sum(cae_ctx *ctx, cae_buf out /* [1] */, cae_buf in /* [n] */, size_t n,
            cae_buf scratch /* [cae_reduce_scratch_elems(n)] */)
{
    return reduce_sum(ctx, out, in, n, scratch, 0);
}

int cae_sum_squares(cae_ctx *ctx, cae_buf out /* [1] */, cae_buf in /* [n] */,
                    size_t n, cae_buf scratch /* [cae_reduce_scratch_elems(n)] */)
{
    return reduce_sum(ctx, out, in, n, scratch, 1);
}

int cae_scale(cae_ctx *ctx, cae_buf x /* [n] */, float alpha, size_t n)
{
    return cae_run_1d(ctx, CAE_K_reduce_scale, n,
                      CAE_ARGS(CAE_BUF(x), CAE_FLOAT(alpha), CAE_ULONG(n)));
}

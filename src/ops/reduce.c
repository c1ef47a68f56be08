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
    cl_kernel k;
    cl_uint a = 0;
    size_t chunks, len;

    if (!out.mem || (n > 0 && (!in.mem || !scratch.mem))) {
        cae_errorf("cae_sum: out, in and scratch must be present");
        return -1;
    }
    if (n == 0)
        return cae_fill_zero(ctx, out, 1);
    reduce_layout(n, &chunks, &len);

    if (!(k = cae_kernel(ctx, "reduce_partial")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, scratch));
    CAE_TRY(cae_arg_buf(k, &a, in));
    CAE_TRY(cae_arg_ulong(k, &a, n));
    CAE_TRY(cae_arg_ulong(k, &a, len));
    CAE_TRY(cae_arg_ulong(k, &a, chunks));
    CAE_TRY(cae_arg_int(k, &a, squares));
    CAE_TRY(cae_launch_1d(ctx, k, chunks));

    a = 0;
    if (!(k = cae_kernel(ctx, "reduce_final")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, out));
    CAE_TRY(cae_arg_buf(k, &a, scratch));
    CAE_TRY(cae_arg_ulong(k, &a, chunks));
    return cae_launch_1d(ctx, k, 1);
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
    cl_kernel k;
    cl_uint a = 0;

    if (n == 0)
        return 0;
    if (!(k = cae_kernel(ctx, "reduce_scale")))
        return -1;
    CAE_TRY(cae_arg_buf(k, &a, x));
    CAE_TRY(cae_arg_float(k, &a, alpha));
    CAE_TRY(cae_arg_ulong(k, &a, n));
    return cae_launch_1d(ctx, k, n);
}

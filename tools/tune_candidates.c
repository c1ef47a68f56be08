/* tune_candidates.c: the CLBlast parameter sets cae-cl-tune tries
 * (tune_candidates.h): hand-picked sets, then random valid ones drawn from
 * a fixed seed, so the same device gets the same list every run. */
#include "tune_candidates.h"

#include "runtime/gemm.h"

#include <stdint.h>
#include <string.h>

/* indices into cae_tune_xgemm_names and cae_tune_direct_names */
enum { GEMMK, KREG, KWG, KWI, MDIMA, MDIMC, MWG, NDIMB, NDIMC, NWG, SA, SB, STRM, STRN, VWM, VWN };
enum { KWID, MDIMAD, MDIMCD, NDIMBD, NDIMCD, PADA, PADB, VWMD, VWND, WGD };

static int xgemm_valid(const cae_ctx *ctx, const size_t *v)
{
    return cae_tune_xgemm_valid(v, ctx->max_work_group, ctx->local_mem);
}

static int direct_valid(const cae_ctx *ctx, const size_t *v)
{
    return cae_tune_direct_valid(v, ctx->max_work_group, ctx->local_mem);
}

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t pick(uint64_t *s, const size_t *from, size_t n)
{
    return from[rng(s) % n];
}

#define PICK(s, arr) pick(s, arr, sizeof arr / sizeof arr[0])

/* v (width values) appended to the n sets in out unless one equals it;
 * the new count */
static size_t add_unique(size_t *out, size_t n, const size_t *v, size_t width)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(out + i * width, v, width * sizeof *v) == 0)
            return n;
    memcpy(out + n * width, v, width * sizeof *v);
    return n + 1;
}

size_t cae_tune_xgemm_candidates(const cae_ctx *ctx, const cae_tune *in_use,
                                  size_t (*out)[CAE_TUNE_XGEMM_N], size_t cap)
{
    static const size_t fixed[][CAE_TUNE_XGEMM_N] = {
        {0, 1, 16, 1, 8, 8, 64, 4, 4, 64, 0, 0, 0, 0, 8, 4},
        {0, 1, 32, 2, 16, 16, 64, 16, 16, 64, 1, 1, 0, 0, 2, 2},
        {0, 1, 32, 2, 8, 16, 128, 8, 16, 128, 1, 1, 1, 1, 4, 4},
        {1, 4, 1, 1, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4},
    };
    static const size_t wg[] = {16, 32, 64, 128}, kwg[] = {16, 32}, dim[] = {4, 8, 16, 32},
                        kwi[] = {1, 2}, vw[] = {1, 2, 4, 8, 16}, bit[] = {0, 1};
    uint64_t seed = 12345;
    size_t n = 0;
    size_t v[CAE_TUNE_XGEMM_N];

    if (in_use->have_xgemm && xgemm_valid(ctx, in_use->xgemm))
        n = add_unique(out[0], n, in_use->xgemm, CAE_TUNE_XGEMM_N);
    if (n < cap)
        n = add_unique(out[0], n, cae_gemm_cpu_xgemm, CAE_TUNE_XGEMM_N);
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && n < cap; i++)
        if (xgemm_valid(ctx, fixed[i]))
            n = add_unique(out[0], n, fixed[i], CAE_TUNE_XGEMM_N);
    for (int tries = 0; tries < 200000 && n < cap; tries++) {
        v[GEMMK] = 0, v[KREG] = 1;
        v[MWG] = PICK(&seed, wg), v[NWG] = PICK(&seed, wg), v[KWG] = PICK(&seed, kwg);
        v[MDIMC] = PICK(&seed, dim), v[NDIMC] = PICK(&seed, dim);
        v[MDIMA] = PICK(&seed, dim), v[NDIMB] = PICK(&seed, dim), v[KWI] = PICK(&seed, kwi);
        v[VWM] = PICK(&seed, vw), v[VWN] = PICK(&seed, vw);
        v[STRM] = PICK(&seed, bit), v[STRN] = PICK(&seed, bit);
        v[SA] = PICK(&seed, bit), v[SB] = PICK(&seed, bit);
        if (xgemm_valid(ctx, v))
            n = add_unique(out[0], n, v, CAE_TUNE_XGEMM_N);
    }
    return n;
}

size_t cae_tune_direct_candidates(const cae_ctx *ctx, const cae_tune *in_use,
                                   size_t (*out)[CAE_TUNE_DIRECT_N], size_t cap)
{
    static const size_t fixed[][CAE_TUNE_DIRECT_N] = {
        {1, 8, 8, 8, 8, 1, 1, 1, 1, 32},
        {2, 8, 8, 8, 8, 1, 1, 4, 4, 32},
        {2, 8, 8, 8, 8, 0, 0, 8, 8, 64},
        {8, 16, 16, 16, 16, 1, 1, 2, 2, 32},
    };
    static const size_t wgd[] = {8, 16, 32, 64}, dim[] = {8, 16, 32}, kwid[] = {2, 8, 16},
                        vw[] = {1, 2, 4, 8}, bit[] = {0, 1};
    uint64_t seed = 54321;
    size_t n = 0;
    size_t v[CAE_TUNE_DIRECT_N];

    if (cap > 0 && in_use->have_direct && direct_valid(ctx, in_use->direct))
        n = add_unique(out[0], n, in_use->direct, CAE_TUNE_DIRECT_N);
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && n < cap; i++)
        if (direct_valid(ctx, fixed[i]))
            n = add_unique(out[0], n, fixed[i], CAE_TUNE_DIRECT_N);
    for (int tries = 0; tries < 200000 && n < cap; tries++) {
        v[WGD] = PICK(&seed, wgd), v[MDIMCD] = PICK(&seed, dim), v[NDIMCD] = PICK(&seed, dim);
        v[MDIMAD] = PICK(&seed, dim), v[NDIMBD] = PICK(&seed, dim), v[KWID] = PICK(&seed, kwid);
        v[VWMD] = PICK(&seed, vw), v[VWND] = PICK(&seed, vw);
        v[PADA] = PICK(&seed, bit), v[PADB] = PICK(&seed, bit);
        if (direct_valid(ctx, v))
            n = add_unique(out[0], n, v, CAE_TUNE_DIRECT_N);
    }
    return n;
}

/* gemm_shapes.c: the step's GEMM shapes (see gemm_shapes.h). */
#include "model/gemm_shapes.h"
#include "tokenizer/dalle.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    cae_gemm_shape *out;
    size_t cap, n;
} shape_list;

static void add(shape_list *l, const char *group, int ta, int tb, size_t m, size_t n, size_t k,
                size_t batch, size_t count)
{
    if (m == 0 || n == 0 || k == 0 || batch == 0 || count == 0)
        return;
    for (size_t i = 0; i < l->n && i < l->cap; i++) {
        cae_gemm_shape *s = &l->out[i];
        if (s->m == m && s->n == n && s->k == k && s->batch == batch && s->trans_a == ta &&
            s->trans_b == tb) {
            s->count += count;
            return;
        }
    }
    if (l->n < l->cap) {
        cae_gemm_shape s = {m, n, k, batch, ta, tb, count, group};
        l->out[l->n] = s;
    }
    l->n++;
}

/* a linear layer over T rows, I -> O, `count` times; backward adds the
 * weight gradient and, with dx, the input gradient */
static void linear(shape_list *l, size_t T, size_t I, size_t O, size_t count, int backward, int dx)
{
    add(l, "linear fwd", 0, 1, T, O, I, 1, count);
    if (backward && dx)
        add(l, "linear dx", 0, 0, T, I, O, 1, count);
    if (backward)
        add(l, "linear dW", 1, 0, O, I, T, 1, count);
}

static void attention(shape_list *l, size_t BH, size_t Nq, size_t Nk, size_t dh, size_t count,
                      int backward)
{
    add(l, "attention", 0, 1, Nq, Nk, dh, BH, count);
    add(l, "attention", 0, 0, Nq, dh, Nk, BH, count);
    if (backward) {
        add(l, "attention", 1, 0, Nk, dh, Nq, BH, 2 * count);
        add(l, "attention", 0, 1, Nq, Nk, dh, BH, count);
        add(l, "attention", 0, 0, Nq, dh, Nk, BH, count);
    }
}

/* one self-attention block over B samples of N tokens */
static void block(shape_list *l, size_t B, size_t N, size_t C, size_t H, size_t hid,
                  size_t count, int backward)
{
    size_t T = B * N;
    linear(l, T, C, 3 * C, count, backward, 1);
    attention(l, B * H, N, N, C / H, count, backward);
    linear(l, T, C, C, count, backward, 1);
    linear(l, T, C, hid, count, backward, 1);
    linear(l, T, hid, C, count, backward, 1);
}

/* one regressor block: M queries per sample over V + M keys */
static void rblock(shape_list *l, size_t B, size_t V, size_t M, size_t C, size_t H, size_t hid,
                   size_t count)
{
    size_t Q = B * M, KV = B * (V + M);
    linear(l, Q, C, C, count, 1, 1);
    linear(l, KV, C, C, 2 * count, 1, 1);
    attention(l, B * H, M, V + M, C / H, count, 1);
    linear(l, Q, C, C, count, 1, 1);
    linear(l, Q, C, hid, count, 1, 1);
    linear(l, Q, hid, C, count, 1, 1);
}

double cae_gemm_shape_flops(const cae_gemm_shape *s)
{
    return 2.0 * (double)s->m * (double)s->n * (double)s->k * (double)s->batch * (double)s->count;
}

static int by_flops(const void *a, const void *b)
{
    double fa = cae_gemm_shape_flops(a), fb = cae_gemm_shape_flops(b);
    return fa < fb ? 1 : fa > fb ? -1 : 0;
}

size_t cae_gemm_shapes(const cae_config *c, size_t B, cae_gemm_shape *out, size_t cap)
{
    size_t D = (size_t)c->embed_dim, Dd = (size_t)c->decoder_embed_dim;
    size_t V = (size_t)c->num_visible, M = (size_t)c->num_mask_patches;
    size_t P = (size_t)c->patch_size, pin = 3 * P * P, K = (size_t)c->decoder_num_classes;
    size_t H = (size_t)c->num_heads, Hd = (size_t)c->decoder_num_heads;
    shape_list l = {out, cap, 0};

    /* encoder over cls + visible, forward and backward; the patch embedding
     * has no input gradient */
    linear(&l, B * V, pin, D, 1, 1, 0);
    block(&l, B, V + 1, D, H, (size_t)c->mlp_hidden, (size_t)c->depth, 1);
    /* alignment pass over cls + masked, forward only */
    linear(&l, B * M, pin, D, 1, 0, 0);
    block(&l, B, M + 1, D, H, (size_t)c->mlp_hidden, (size_t)c->depth, 0);
    if (Dd != D) {
        linear(&l, B * (V + 1), D, Dd, 1, 1, 1);
        linear(&l, B * (M + 1), D, Dd, 1, 0, 0);
    }
    for (int i = 0; i < c->regressor_depth; i++)
        rblock(&l, B, V, M, Dd, Hd, (size_t)c->decoder_mlp_hidden, 1);
    block(&l, B, M, Dd, Hd, (size_t)c->decoder_mlp_hidden, (size_t)c->decoder_depth, 1);
    linear(&l, B * M, Dd, K, 1, 1, 1);
    if (l.n <= cap)
        qsort(out, l.n, sizeof *out, by_flops);
    return l.n;
}

static void add_tokenizer(void *user, size_t m, size_t n, size_t k, size_t count)
{
    add(user, "tokenizer", 0, 0, m, n, k, 1, count);
}

int cae_gemm_shapes_tokenizer(const char *path, size_t B, int image_size, cl_ulong max_alloc,
                              cae_gemm_shape *out, size_t cap, size_t *n)
{
    shape_list l = {out, cap, *n};
    CAE_TRY(cae_dalle_gemms(path, B, image_size, max_alloc, add_tokenizer, &l));
    if (l.n <= cap)
        qsort(out, l.n, sizeof *out, by_flops);
    *n = l.n;
    return 0;
}

/* params.c: the table of the CAE model's trainable tensors and the arenas. */
#include "model/params.h"

#include "runtime/errors.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Tensors start on 16-element boundaries (64 bytes), so vector loads of a
 * tensor's rows never start mid-vector at the tensor's beginning. */
#define ALIGN_ELEMS 16

static int add(cae_param_table *t, cae_init_rule init, float value, int ndim, const int64_t *shape,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int add(cae_param_table *t, cae_init_rule init, float value, int ndim, const int64_t *shape,
               const char *fmt, ...)
{
    cae_param *p;
    va_list ap;
    size_t len;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        cae_param *grown = realloc(t->p, cap * sizeof *grown);
        if (!grown) {
            cae_errorf("out of host memory building the parameter table");
            return -1;
        }
        t->p = grown;
        t->cap = cap;
    }
    p = &t->p[t->n++];
    memset(p, 0, sizeof *p);
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->init = init;
    p->init_value = value;
    len = strlen(p->name);
    /* the official rule: no decay for 1-D tensors and biases */
    p->decay = ndim >= 2 && !(len >= 5 && strcmp(p->name + len - 5, ".bias") == 0);
    return 0;
}

int cae_params_add(cae_param_table *t, cae_init_rule init, float value, int ndim,
                   const int64_t *shape, const char *name)
{
    return add(t, init, value, ndim, shape, "%s", name);
}

static int add_linear(cae_param_table *t, const char *prefix, int64_t out, int64_t in, int bias)
{
    int64_t ws[2] = {out, in}, bs[1] = {out};
    CAE_TRY(add(t, CAE_INIT_XAVIER, 0, 2, ws, "%s.weight", prefix));
    t->p[t->n - 1].fan_in = (size_t)in;
    t->p[t->n - 1].fan_out = (size_t)out;
    if (bias)
        CAE_TRY(add(t, CAE_INIT_ZERO, 0, 1, bs, "%s.bias", prefix));
    return 0;
}

static int add_norm(cae_param_table *t, const char *prefix, int64_t dim)
{
    int64_t s[1] = {dim};
    CAE_TRY(add(t, CAE_INIT_CONST, 1.0f, 1, s, "%s.weight", prefix));
    return add(t, CAE_INIT_ZERO, 0, 1, s, "%s.bias", prefix);
}

static int add_vector(cae_param_table *t, cae_init_rule init, float v, int64_t dim, const char *name)
{
    int64_t s[1] = {dim};
    return add(t, init, v, 1, s, "%s", name);
}

/* encoder.blocks.i / decoder.decoder_blocks.i */
static int add_block(cae_param_table *t, const char *prefix, int64_t dim, int64_t hidden, double ls)
{
    char name[CAE_PARAM_NAME_MAX];
/* names longer than the table allows are a bug in the table itself */
#define SUB(s) (snprintf(name, sizeof name, "%s.%s", prefix, s) >= (int)sizeof name ? abort(), name : name)
    CAE_TRY(add_norm(t, SUB("norm1"), dim));
    CAE_TRY(add_linear(t, SUB("attn.qkv"), 3 * dim, dim, 0));
    CAE_TRY(add_vector(t, CAE_INIT_ZERO, 0, dim, SUB("attn.q_bias")));
    CAE_TRY(add_vector(t, CAE_INIT_ZERO, 0, dim, SUB("attn.v_bias")));
    CAE_TRY(add_linear(t, SUB("attn.proj"), dim, dim, 1));
    CAE_TRY(add_norm(t, SUB("norm2"), dim));
    CAE_TRY(add_linear(t, SUB("mlp.fc1"), hidden, dim, 1));
    CAE_TRY(add_linear(t, SUB("mlp.fc2"), dim, hidden, 1));
    if (ls > 0) {
        CAE_TRY(add_vector(t, CAE_INIT_CONST, (float)ls, dim, SUB("gamma_1")));
        CAE_TRY(add_vector(t, CAE_INIT_CONST, (float)ls, dim, SUB("gamma_2")));
    }
    return 0;
}

static int add_regressor_block(cae_param_table *t, const char *prefix, int64_t dim, int64_t hidden,
                               double ls)
{
    char name[CAE_PARAM_NAME_MAX];
    CAE_TRY(add_norm(t, SUB("norm1_q"), dim));
    CAE_TRY(add_norm(t, SUB("norm1_k"), dim));
    CAE_TRY(add_norm(t, SUB("norm1_v"), dim));
    CAE_TRY(add_norm(t, SUB("norm2_cross"), dim));
    CAE_TRY(add_linear(t, SUB("cross_attn.q"), dim, dim, 0));
    CAE_TRY(add_linear(t, SUB("cross_attn.k"), dim, dim, 0));
    CAE_TRY(add_linear(t, SUB("cross_attn.v"), dim, dim, 0));
    CAE_TRY(add_vector(t, CAE_INIT_ZERO, 0, dim, SUB("cross_attn.q_bias")));
    CAE_TRY(add_vector(t, CAE_INIT_ZERO, 0, dim, SUB("cross_attn.v_bias")));
    CAE_TRY(add_linear(t, SUB("cross_attn.proj"), dim, dim, 1));
    CAE_TRY(add_linear(t, SUB("mlp_cross.fc1"), hidden, dim, 1));
    CAE_TRY(add_linear(t, SUB("mlp_cross.fc2"), dim, hidden, 1));
    /* with decoder layer scale 0 these are frozen ones: not in the table */
    if (ls > 0) {
        CAE_TRY(add_vector(t, CAE_INIT_CONST, (float)ls, dim, SUB("gamma_1_cross")));
        CAE_TRY(add_vector(t, CAE_INIT_CONST, (float)ls, dim, SUB("gamma_2_cross")));
    }
#undef SUB
    return 0;
}

static size_t align_up(size_t n)
{
    return (n + ALIGN_ELEMS - 1) / ALIGN_ELEMS * ALIGN_ELEMS;
}

/* The buffer being filled: its tensors are t->p[first..] in table order;
 * decayed ones sit from offset 0, the others after them from nd_base (known
 * only when the buffer closes), at offsets relative to it in the mean time. */
typedef struct {
    size_t first;  /* its first tensor */
    size_t dec;    /* end of the decayed group (unaligned) */
    size_t nd;     /* end of the undecayed group, relative to its start */
} layout_chunk;

/* the buffer's extent with both groups laid out */
static size_t chunk_extent(size_t dec, size_t nd)
{
    return nd == 0 ? dec : align_up(dec) + nd;
}

/* a group's end after appending p to it, when p belongs to it (decay flag) */
static size_t grow(size_t end, const cae_param *p, int decayed)
{
    return (p->decay != 0) == decayed ? align_up(end) + p->numel : end;
}

static void close_chunk(cae_param_table *t, const layout_chunk *c, size_t end)
{
    size_t nd_base = align_up(c->dec);
    int k = t->n_chunks - 1;
    for (size_t i = c->first; i < end; i++)
        if (!t->p[i].decay)
            t->p[i].off += nd_base;
    t->chunk_elems[k] = chunk_extent(c->dec, c->nd);
    t->chunk_decay_elems[k] = c->dec;
}

int cae_params_layout(cae_param_table *t, size_t max_chunk_bytes)
{
    size_t limit = max_chunk_bytes / 4;
    layout_chunk c = {0, 0, 0};
    t->n_chunks = 1;
    t->total = 0;
    free(t->chunk_elems);
    free(t->chunk_decay_elems);
    t->chunk_elems = calloc(t->n + 1, sizeof *t->chunk_elems);
    t->chunk_decay_elems = calloc(t->n + 1, sizeof *t->chunk_decay_elems);
    if (!t->chunk_elems || !t->chunk_decay_elems) {
        cae_errorf("out of host memory");
        return -1;
    }
    for (size_t i = 0; i < t->n; i++) {
        cae_param *p = &t->p[i];
        if (p->numel > limit) {
            cae_errorf("tensor %s (%zu bytes) exceeds the device's largest allocation (%zu bytes)",
                       p->name, p->numel * 4, max_chunk_bytes);
            return -1;
        }
        if (i > c.first && chunk_extent(grow(c.dec, p, 1), grow(c.nd, p, 0)) > limit) {
            close_chunk(t, &c, i); /* next buffer */
            t->n_chunks++;
            c.first = i;
            c.dec = c.nd = 0;
        }
        c.dec = grow(c.dec, p, 1);
        c.nd = grow(c.nd, p, 0);
        p->chunk = t->n_chunks - 1;
        /* an undecayed tensor's offset is relative until the buffer closes */
        p->off = (p->decay ? c.dec : c.nd) - p->numel;
        t->total += p->numel;
    }
    close_chunk(t, &c, t->n);
    return 0;
}

int cae_params_build(cae_param_table *t, const cae_config *c, size_t max_chunk_bytes)
{
    char prefix[CAE_PARAM_NAME_MAX];
    int64_t D = c->embed_dim, Dd = c->decoder_embed_dim;
    int64_t patch[4] = {D, 3, c->patch_size, c->patch_size};
    int64_t token[3] = {1, 1, D}, mask[3] = {1, 1, Dd};

    memset(t, 0, sizeof *t);
    /* encoder */
    CAE_TRY(add(t, CAE_INIT_TRUNC_NORMAL, 0, 3, token, "encoder.cls_token"));
    CAE_TRY(add(t, CAE_INIT_TRUNC_NORMAL, 0, 4, patch, "encoder.patch_embed.proj.weight"));
    CAE_TRY(add_vector(t, CAE_INIT_ZERO, 0, D, "encoder.patch_embed.proj.bias"));
    for (int i = 0; i < c->depth; i++) {
        snprintf(prefix, sizeof prefix, "encoder.blocks.%d", i);
        CAE_TRY(add_block(t, prefix, D, c->mlp_hidden, c->layer_scale_init_value));
    }
    CAE_TRY(add_norm(t, "encoder.norm", D));
    /* projection to the regressor width */
    if (Dd != D) {
        CAE_TRY(add_linear(t, "encoder_to_regresser", Dd, D, 1));
        CAE_TRY(add_norm(t, "encoder_to_regresser_norm", Dd));
    }
    /* regressor */
    CAE_TRY(add(t, CAE_INIT_TRUNC_NORMAL, 0, 3, mask, "mask_token"));
    for (int i = 0; i < c->regressor_depth; i++) {
        snprintf(prefix, sizeof prefix, "regresser.regressor_blocks.%d", i);
        CAE_TRY(add_regressor_block(t, prefix, Dd, c->decoder_mlp_hidden,
                                    c->decoder_layer_scale_init_value));
    }
    CAE_TRY(add_norm(t, "regresser.norm", Dd));
    /* decoder */
    for (int i = 0; i < c->decoder_depth; i++) {
        snprintf(prefix, sizeof prefix, "decoder.decoder_blocks.%d", i);
        CAE_TRY(add_block(t, prefix, Dd, c->decoder_mlp_hidden, c->decoder_layer_scale_init_value));
    }
    CAE_TRY(add_norm(t, "decoder.norm", Dd));
    CAE_TRY(add_linear(t, "decoder.head", c->decoder_num_classes, Dd, 1));
    if (cae_params_layout(t, max_chunk_bytes) != 0) {
        cae_params_free(t);
        return -1;
    }
    return 0;
}

void cae_params_free(cae_param_table *t)
{
    free(t->p);
    free(t->chunk_elems);
    free(t->chunk_decay_elems);
    memset(t, 0, sizeof *t);
}

const cae_param *cae_params_find(const cae_param_table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->p[i].name, name) == 0)
            return &t->p[i];
    return NULL;
}

cae_buf cae_params_view(const cae_param_table *t, const cae_arena *a, const char *name)
{
    const cae_param *p = cae_params_find(t, name);
    cae_buf b;
    if (!p) {
        cae_errorf("internal error: no parameter named %s", name);
        abort();
    }
    b.mem = a->mem[p->chunk];
    b.off = p->off;
    return b;
}

int cae_arena_alloc(cae_ctx *ctx, const cae_param_table *t, cae_arena *a)
{
    a->n = 0;
    a->mem = calloc((size_t)t->n_chunks, sizeof *a->mem);
    if (!a->mem) {
        cae_errorf("out of host memory");
        return -1;
    }
    for (int i = 0; i < t->n_chunks; i++) {
        if (cae_alloc(ctx, t->chunk_elems[i] * 4, &a->mem[i]) != 0) {
            cae_arena_free(a);
            return -1;
        }
        a->n++;
    }
    return 0;
}

void cae_arena_free(cae_arena *a)
{
    for (int i = 0; i < a->n; i++)
        cae_release(&a->mem[i]);
    free(a->mem);
    a->mem = NULL;
    a->n = 0;
}

int cae_arena_zero(cae_ctx *ctx, const cae_param_table *t, const cae_arena *a)
{
    for (int i = 0; i < a->n; i++)
        CAE_TRY(cae_fill_zero(ctx, (cae_buf){a->mem[i], 0}, t->chunk_elems[i]));
    return 0;
}

float **cae_arena_image_new(const cae_param_table *t)
{
    float **image = calloc((size_t)t->n_chunks, sizeof *image);
    if (!image) {
        cae_errorf("out of host memory");
        return NULL;
    }
    for (int i = 0; i < t->n_chunks; i++) {
        image[i] = calloc(t->chunk_elems[i] ? t->chunk_elems[i] : 1, sizeof **image);
        if (!image[i]) {
            cae_errorf("out of host memory for a %zu-byte parameter image", t->chunk_elems[i] * 4);
            cae_arena_image_free(t, image);
            return NULL;
        }
    }
    return image;
}

void cae_arena_image_free(const cae_param_table *t, float **image)
{
    if (!image)
        return;
    for (int i = 0; i < t->n_chunks; i++)
        free(image[i]);
    free(image);
}

int cae_arena_write_image(cae_ctx *ctx, const cae_param_table *t, const cae_arena *a,
                          float *const *image)
{
    for (int i = 0; i < a->n; i++)
        CAE_TRY(cae_write(ctx, (cae_buf){a->mem[i], 0}, image[i], t->chunk_elems[i] * 4));
    return 0;
}

int cae_arena_read_image(cae_ctx *ctx, const cae_param_table *t, const cae_arena *a,
                         float *const *image)
{
    for (int i = 0; i < a->n; i++)
        if (t->chunk_elems[i] > 0)
            CAE_TRY(cae_read(ctx, image[i], (cae_buf){a->mem[i], 0}, t->chunk_elems[i] * 4));
    return 0;
}

size_t cae_params_chunk_limit(const cae_ctx *ctx)
{
    const char *env = getenv("CAE_CL_MAX_CHUNK_BYTES");
    size_t limit = (size_t)ctx->max_alloc;
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0' && v >= 64 && v < limit)
            limit = (size_t)v;
    }
    return limit;
}

/* params.h: the parameter table and the flat device arenas.
 *
 * One table lists every trainable tensor of the model under its official
 * state_dict key, with its shape, init rule and weight-decay flag; offsets
 * in the arenas derive from it. Parameters and gradients (and later the
 * optimizer moments) each live in one arena with this same layout. An arena
 * bigger than CL_DEVICE_MAX_MEM_ALLOC_SIZE is split into several buffers; a
 * tensor never straddles two.
 *
 * Layout: tensors go to buffers in table order, each starting on a
 * 16-element boundary. Within a buffer every tensor with decay set comes
 * before every tensor without (each group in table order), so AdamW is one
 * kernel per buffer: elements [0, chunk_decay_elems) decay, the rest do not.
 * The gaps between tensors are never written by the model; zeroing an arena
 * (cae_arena_zero) zeroes them too.
 */
#ifndef CAE_PARAMS_H
#define CAE_PARAMS_H

#include "model/cae_config.h"
#include "runtime/runtime.h"

#include <stdint.h>

typedef enum {
    CAE_INIT_XAVIER,       /* xavier-uniform on (fan_in, fan_out) */
    CAE_INIT_TRUNC_NORMAL, /* std 0.02, cut at +-0.02 */
    CAE_INIT_ZERO,
    CAE_INIT_CONST         /* every element = init_value */
} cae_init_rule;

#define CAE_PARAM_NAME_MAX 96
#define CAE_PARAM_MAX_DIMS 4

typedef struct {
    char name[CAE_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[CAE_PARAM_MAX_DIMS];
    size_t numel;
    cae_init_rule init;
    float init_value;
    size_t fan_in, fan_out;
    int decay;    /* weight decay applies: 2+ dims and not a .bias */
    int chunk;    /* arena buffer holding it */
    size_t off;   /* element offset in that buffer */
} cae_param;

typedef struct {
    cae_param *p;
    size_t n, cap;
    size_t total;        /* elements over all tensors */
    int n_chunks;
    size_t *chunk_elems; /* elements per arena buffer */
    size_t *chunk_decay_elems; /* per buffer: its leading elements that decay */
} cae_param_table;

typedef struct {
    cl_mem *mem; /* one per chunk */
    int n;
} cae_arena;

/* Build the table for a model (its layout needs the device's allocation
 * limit: max_chunk_bytes). */
int cae_params_build(cae_param_table *t, const cae_config *c, size_t max_chunk_bytes);
/* (Re)compute chunk, off, total, n_chunks, chunk_elems and
 * chunk_decay_elems from the entries' numel and decay, for buffers of at
 * most max_chunk_bytes; cae_params_build calls it, tests use it on tables
 * made by hand (p from malloc, freed by cae_params_free). */
int cae_params_layout(cae_param_table *t, size_t max_chunk_bytes);
/* Appends one tensor (before cae_params_layout), with the official decay
 * rule: none for 1-D tensors and biases. */
int cae_params_add(cae_param_table *t, cae_init_rule init, float value, int ndim,
                   const int64_t *shape, const char *name);
void cae_params_free(cae_param_table *t);
const cae_param *cae_params_find(const cae_param_table *t, const char *name);
/* The view of a tensor in an arena laid out by t; an unknown name is a bug
 * in the model code and aborts with a message. */
cae_buf cae_params_view(const cae_param_table *t, const cae_arena *a, const char *name);

int cae_arena_alloc(cae_ctx *ctx, const cae_param_table *t, cae_arena *a);
void cae_arena_free(cae_arena *a);
int cae_arena_zero(cae_ctx *ctx, const cae_param_table *t, const cae_arena *a);

/* A host image of an arena (one zeroed array per buffer): fill tensors at
 * image[p->chunk] + p->off, then write every buffer whole in one call. */
float **cae_arena_image_new(const cae_param_table *t);
void cae_arena_image_free(const cae_param_table *t, float **image);
int cae_arena_write_image(cae_ctx *ctx, const cae_param_table *t, const cae_arena *a,
                          float *const *image);
/* The reverse: read every buffer of an arena whole into an image (blocking). */
int cae_arena_read_image(cae_ctx *ctx, const cae_param_table *t, const cae_arena *a,
                         float *const *image);

/* The largest buffer the arenas may use: CL_DEVICE_MAX_MEM_ALLOC_SIZE, or
 * less through CAE_CL_MAX_CHUNK_BYTES (to test splitting on any device). */
size_t cae_params_chunk_limit(const cae_ctx *ctx);

#endif

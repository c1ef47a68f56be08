/* memory.h: device buffers of a context.
 *
 * cae_alloc refuses sizes above max_alloc with a clear error. Both it and
 * cae_release keep ctx->dev_bytes and dev_bytes_peak (cae_release finds the
 * buffer's context among the live ones, see cae_memory_track).
 */
#ifndef CAE_MEMORY_H
#define CAE_MEMORY_H

#include "runtime/ctx.h"

/* Count ctx among the live contexts (on) or stop counting it (off). */
void cae_memory_track(cae_ctx *ctx, int on);

int cae_alloc(cae_ctx *ctx, size_t bytes, cl_mem *out);
void cae_release(cl_mem *mem);
int cae_write(cae_ctx *ctx, cae_buf dst, const void *src, size_t bytes);   /* blocking */
int cae_read(cae_ctx *ctx, void *dst, cae_buf src, size_t bytes);          /* blocking */
int cae_fill_float(cae_ctx *ctx, cae_buf dst, float value, size_t n);
/* zeroing and copies are kernels (not clEnqueueFillBuffer/CopyBuffer), so
 * kernel checkers see the bytes they write as initialized */
int cae_fill_zero(cae_ctx *ctx, cae_buf dst, size_t n_elements);            /* 4-byte elements */
int cae_copy(cae_ctx *ctx, cae_buf dst, cae_buf src, size_t n_elements);     /* 4-byte elements */

#endif

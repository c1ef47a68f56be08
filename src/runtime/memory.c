/* memory.c: device buffers and what they cost: cae_alloc and cae_release
 * keep each live context's byte count and its high-water mark; blocking
 * reads and writes; fills and copies as kernels. */
#include "runtime/memory.h"

#include "runtime/launch.h"

/* The live contexts, so cae_release (which gets only the cl_mem) can find
 * the cae_ctx whose memory total to lower. Device buffers are created and
 * released on the thread that owns the context; a handful at most. */
#define MAX_LIVE_CTX 16
static cae_ctx *live_ctx[MAX_LIVE_CTX];

void cae_memory_track(cae_ctx *ctx, int on)
{
    for (int i = 0; i < MAX_LIVE_CTX; i++) {
        if (on && !live_ctx[i]) {
            live_ctx[i] = ctx;
            return;
        }
        if (!on && live_ctx[i] == ctx)
            live_ctx[i] = NULL;
    }
}

int cae_alloc(cae_ctx *ctx, size_t bytes, cl_mem *out)
{
    cl_int err;
    if (bytes == 0)
        bytes = 4;
    if (bytes > ctx->max_alloc) {
        cae_errorf("buffer of %zu bytes exceeds the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu)",
                   bytes, (unsigned long long)ctx->max_alloc);
        return -1;
    }
    *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        cae_errorf("clCreateBuffer(%zu bytes) failed: %s (device %s)", bytes,
                   cae_cl_error_name(err), ctx->device_name);
        *out = NULL;
        return -1;
    }
    ctx->dev_bytes += bytes;
    if (ctx->dev_bytes > ctx->dev_bytes_peak)
        ctx->dev_bytes_peak = ctx->dev_bytes;
    return 0;
}

/* Lower the memory total of the live context that owns mem (by its size,
 * never below zero: buffers made without cae_alloc were never counted). */
static void uncount(cl_mem mem)
{
    cl_context c = NULL;
    size_t size = 0;
    if (clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof c, &c, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS)
        return;
    for (int i = 0; i < MAX_LIVE_CTX; i++)
        if (live_ctx[i] && live_ctx[i]->context == c) {
            cae_ctx *ctx = live_ctx[i];
            ctx->dev_bytes -= size < ctx->dev_bytes ? size : ctx->dev_bytes;
            return;
        }
}

void cae_release(cl_mem *mem)
{
    if (*mem) {
        uncount(*mem);
        clReleaseMemObject(*mem);
    }
    *mem = NULL;
}

int cae_write(cae_ctx *ctx, cae_buf dst, const void *src, size_t bytes)
{
    if (bytes == 0)
        return 0;
    CL_CHECK(clEnqueueWriteBuffer(ctx->queue, dst.mem, CL_TRUE, dst.off * 4, bytes, src, 0, NULL, NULL));
    return 0;
}

int cae_read(cae_ctx *ctx, void *dst, cae_buf src, size_t bytes)
{
    if (bytes == 0)
        return 0;
    CL_CHECK(clEnqueueReadBuffer(ctx->queue, src.mem, CL_TRUE, src.off * 4, bytes, dst, 0, NULL, NULL));
    return 0;
}

int cae_fill_float(cae_ctx *ctx, cae_buf dst, float value, size_t n)
{
    return cae_run_1d(ctx, CAE_K_fill_float, n,
                      CAE_ARGS(CAE_BUF(dst), CAE_FLOAT(value), CAE_ULONG(n)));
}

int cae_fill_zero(cae_ctx *ctx, cae_buf dst, size_t n)
{
    return cae_fill_float(ctx, dst, 0.0f, n);
}

int cae_copy(cae_ctx *ctx, cae_buf dst, cae_buf src, size_t n)
{
    return cae_run_1d(ctx, CAE_K_copy_float, n, CAE_ARGS(CAE_BUF(dst), CAE_BUF(src), CAE_ULONG(n)));
}

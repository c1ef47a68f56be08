/* runtime.c: a context's lifetime: cae_ctx_init puts the device, the queue,
 * the program and the GEMM back end together; cae_ctx_free takes them apart
 * in the reverse order. Each part lives in its own module (runtime.h). */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

int cae_ctx_init(cae_ctx *ctx, const cae_ctx_options *opt)
{
    cl_int err;
    cl_command_queue_properties props = 0;
    cae_gemm_choice gemm = opt ? opt->gemm : CAE_GEMM_AUTO;

    memset(ctx, 0, sizeof *ctx);
    cae_memory_track(ctx, 1);
    if (cae_device_open(ctx, opt ? opt->device_slot : 0) != 0) {
        cae_memory_track(ctx, 0);
        return -1;
    }
    cae_program_tune(ctx, opt ? opt->tune : NULL);
    ctx->context = clCreateContext(NULL, 1, &ctx->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        cae_cl_error("clCreateContext", err, __FILE__, __LINE__);
        cae_memory_track(ctx, 0);
        return -1;
    }
    ctx->profiling = opt ? opt->profiling : 0;
    if (ctx->profiling)
        props |= CL_QUEUE_PROFILING_ENABLE;
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, props, &err);
    if (err != CL_SUCCESS) {
        cae_cl_error("clCreateCommandQueue", err, __FILE__, __LINE__);
        cae_ctx_free(ctx);
        return -1;
    }
    if (opt && opt->host_threads > 0)
        cae_gemm_limit_host_threads(opt->host_threads);
    if (cae_program_build(ctx) != 0 || cae_gemm_init(ctx, gemm) != 0) {
        cae_ctx_free(ctx);
        return -1;
    }
    return 0;
}

void cae_ctx_free(cae_ctx *ctx)
{
    if (ctx->queue)
        clFinish(ctx->queue);
    cae_prof_clear(ctx);
    free(ctx->prof_events);
    cae_gemm_free(ctx);
    cae_program_free(ctx);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->context)
        clReleaseContext(ctx->context);
    cae_memory_track(ctx, 0);
    memset(ctx, 0, sizeof *ctx);
}

/* launch.c: kernel arguments, launches on the context's in-order queue,
 * the profiling events they leave, and waiting for the queue. */
#include "runtime/launch.h"

#include <stdlib.h>

static int set_arg(cl_kernel k, cl_uint index, size_t size, const void *value, const char *what)
{
    cl_int err = clSetKernelArg(k, index, size, value);
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
        cae_errorf("clSetKernelArg(%s, arg %u, %s) failed: %s", name, index, what,
                   cae_cl_error_name(err));
        return -1;
    }
    return 0;
}

int cae_arg_buf(cl_kernel k, cl_uint *index, cae_buf b)
{
    cl_ulong off = b.off;
    CAE_TRY(set_arg(k, (*index)++, sizeof(cl_mem), b.mem ? &b.mem : NULL, "buffer"));
    return set_arg(k, (*index)++, sizeof off, &off, "offset");
}

int cae_arg_int(cl_kernel k, cl_uint *index, int v)
{
    cl_int x = v;
    return set_arg(k, (*index)++, sizeof x, &x, "int");
}

int cae_arg_uint(cl_kernel k, cl_uint *index, cl_uint v)
{
    return set_arg(k, (*index)++, sizeof v, &v, "uint");
}

int cae_arg_ulong(cl_kernel k, cl_uint *index, cl_ulong v)
{
    return set_arg(k, (*index)++, sizeof v, &v, "ulong");
}

int cae_arg_float(cl_kernel k, cl_uint *index, float v)
{
    cl_float x = v;
    return set_arg(k, (*index)++, sizeof x, &x, "float");
}

int cae_arg_local(cl_kernel k, cl_uint *index, size_t bytes)
{
    return set_arg(k, (*index)++, bytes, NULL, "local memory");
}

int cae_set_args(cl_kernel k, cl_uint *index, const cae_arg *args, size_t n)
{
    for (const cae_arg *x = args; x < args + n; x++)
        CAE_TRY(x->kind == CAE_ARG_IS_BUF     ? cae_arg_buf(k, index, x->v.buf)
                : x->kind == CAE_ARG_IS_INT   ? cae_arg_int(k, index, x->v.i)
                : x->kind == CAE_ARG_IS_ULONG ? cae_arg_ulong(k, index, x->v.u)
                                              : cae_arg_float(k, index, x->v.f));
    return 0;
}

int cae_prof_record(cae_ctx *ctx, cl_event ev, const char *name)
{
    if (ctx->n_prof_events == ctx->cap_prof_events) {
        size_t cap = ctx->cap_prof_events ? 2 * ctx->cap_prof_events : 1024;
        cae_prof_event *grown = realloc(ctx->prof_events, cap * sizeof *grown);
        if (!grown) {
            clReleaseEvent(ev);
            cae_errorf("out of host memory keeping profiling events");
            return -1;
        }
        ctx->prof_events = grown;
        ctx->cap_prof_events = cap;
    }
    snprintf(ctx->prof_events[ctx->n_prof_events].name, sizeof ctx->prof_events[0].name, "%s", name);
    ctx->prof_events[ctx->n_prof_events++].event = ev;
    return 0;
}

void cae_prof_clear(cae_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_prof_events; i++)
        clReleaseEvent(ctx->prof_events[i].event);
    ctx->n_prof_events = 0;
}

int cae_launch(cae_ctx *ctx, cl_kernel k, cl_uint dims, const size_t *global, const size_t *local)
{
    size_t g[3];
    cl_int err;
    cl_event ev = NULL;
    for (cl_uint d = 0; d < dims; d++) {
        g[d] = global[d] ? global[d] : 1;
        if (local && g[d] % local[d])
            g[d] += local[d] - g[d] % local[d];
    }
    err = clEnqueueNDRangeKernel(ctx->queue, k, dims, NULL, g, local, 0, NULL,
                                 ctx->profiling ? &ev : NULL);
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
        cae_errorf("clEnqueueNDRangeKernel(%s) failed: %s", name, cae_cl_error_name(err));
        return -1;
    }
    ctx->launches++;
    if (ev) {
        char name[64] = "?";
        clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name - 1, name, NULL);
        return cae_prof_record(ctx, ev, name);
    }
    return 0;
}

/* 1-D launch of k, whose own work-group limit is wg */
static int launch_1d(cae_ctx *ctx, cl_kernel k, size_t n, size_t wg)
{
    /* 64 by default: it keeps CPU work-groups coarse and suits every GPU;
     * cae-cl-tune may choose another. Never above the kernel's own limit. */
    size_t local = wg < ctx->launch_wg ? wg : ctx->launch_wg;
    if (n == 0)
        return 0;
    if (local == 0)
        local = 1;
    return cae_launch(ctx, k, 1, &n, &local);
}

/* One work-group per row of k, whose own work-group limit is wg */
static int launch_rows(cae_ctx *ctx, cl_kernel k, cl_uint scratch_arg, size_t rows,
                       size_t per_item, size_t wg)
{
    size_t L = 1, limit = ctx->row_group;
    if (rows == 0)
        return 0;
    if (limit > wg)
        limit = wg;
    if (limit > ctx->local_mem / (per_item * sizeof(float)))
        limit = (size_t)(ctx->local_mem / (per_item * sizeof(float)));
    while (L * 2 <= limit)
        L *= 2;
    CAE_TRY(cae_arg_local(k, &scratch_arg, L * per_item * sizeof(float)));
    size_t global = rows * L;
    return cae_launch(ctx, k, 1, &global, &L);
}

/* A kernel that is not one of the context's (tests, tools): ask its limit. */
static int kernel_wg(cae_ctx *ctx, cl_kernel k, size_t *wg)
{
    CL_CHECK(clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof *wg, wg,
                                      NULL));
    return 0;
}

int cae_launch_1d(cae_ctx *ctx, cl_kernel k, size_t n)
{
    size_t wg = 0;
    if (n == 0)
        return 0;
    CAE_TRY(kernel_wg(ctx, k, &wg));
    return launch_1d(ctx, k, n, wg);
}

int cae_launch_rows(cae_ctx *ctx, cl_kernel k, cl_uint scratch_arg, size_t rows, size_t per_item)
{
    size_t wg = 0;
    if (rows == 0)
        return 0;
    CAE_TRY(kernel_wg(ctx, k, &wg));
    return launch_rows(ctx, k, scratch_arg, rows, per_item, wg);
}

int cae_launch_id_1d(cae_ctx *ctx, cae_kernel_id id, size_t n)
{
    return launch_1d(ctx, ctx->kernel[id], n, ctx->kernel_wg[id]);
}

int cae_run_1d(cae_ctx *ctx, cae_kernel_id id, size_t n, const cae_arg *args, size_t n_args)
{
    cl_uint index = 0;
    if (n == 0)
        return 0;
    CAE_TRY(cae_set_args(ctx->kernel[id], &index, args, n_args));
    return cae_launch_id_1d(ctx, id, n);
}

int cae_run_rows(cae_ctx *ctx, cae_kernel_id item, cae_kernel_id group, size_t rows,
                 size_t per_item, const cae_arg *args, size_t n_args)
{
    cl_uint index = 0;
    if (rows == 0)
        return 0;
    if (ctx->row_group == 0)
        return cae_run_1d(ctx, item, rows, args, n_args);
    CAE_TRY(cae_set_args(ctx->kernel[group], &index, args, n_args));
    return launch_rows(ctx, ctx->kernel[group], index, rows, per_item, ctx->kernel_wg[group]);
}

int cae_finish(cae_ctx *ctx)
{
    CL_CHECK(clFinish(ctx->queue));
    return 0;
}

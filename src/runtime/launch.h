/* launch.h: kernel arguments and launches on the context's queue.
 *
 * Launches never wait; cae_finish does. While ctx->profiling is set, each
 * launch keeps its event under the kernel's name (profile.h reads them).
 */
#ifndef CAE_LAUNCH_H
#define CAE_LAUNCH_H

#include "runtime/ctx.h"

/* Argument setters: *index advances past what was set (a cae_buf takes two
 * slots: the cl_mem and a ulong element offset). An absent cae_buf is
 * passed as a NULL cl_mem, which kernels must not dereference. */
int cae_arg_buf(cl_kernel k, cl_uint *index, cae_buf b);
int cae_arg_int(cl_kernel k, cl_uint *index, int v);
int cae_arg_uint(cl_kernel k, cl_uint *index, cl_uint v);
int cae_arg_ulong(cl_kernel k, cl_uint *index, cl_ulong v);
int cae_arg_float(cl_kernel k, cl_uint *index, float v);
int cae_arg_local(cl_kernel k, cl_uint *index, size_t bytes);

/* A kernel argument by value, for the argument lists below: CAE_BUF(b)
 * (two slots, as cae_arg_buf), CAE_INT(v), CAE_ULONG(v), CAE_FLOAT(v). */
typedef struct {
    enum { CAE_ARG_IS_BUF, CAE_ARG_IS_INT, CAE_ARG_IS_ULONG, CAE_ARG_IS_FLOAT } kind;
    union {
        cae_buf buf;
        cl_int i;
        cl_ulong u;
        cl_float f;
    } v;
} cae_arg;
#define CAE_BUF(b) ((cae_arg){.kind = CAE_ARG_IS_BUF, .v.buf = (b)})
#define CAE_INT(x) ((cae_arg){.kind = CAE_ARG_IS_INT, .v.i = (x)})
#define CAE_ULONG(x) ((cae_arg){.kind = CAE_ARG_IS_ULONG, .v.u = (x)})
#define CAE_FLOAT(x) ((cae_arg){.kind = CAE_ARG_IS_FLOAT, .v.f = (x)})
/* An argument list written in place, as the (args, n) pair the functions
 * below take: CAE_ARGS(CAE_BUF(y), CAE_ULONG(n)). */
#define CAE_ARGS(...)                                                         \
    (const cae_arg[]){__VA_ARGS__}, (sizeof((const cae_arg[]){__VA_ARGS__}) / sizeof(cae_arg))

/* Set args[0..n) in order from *index on; *index advances past them. */
int cae_set_args(cl_kernel k, cl_uint *index, const cae_arg *args, size_t n);

/* Enqueue a kernel. global is rounded up to a multiple of local when local
 * is given (kernels guard their index); local may be NULL. Never waits. */
int cae_launch(cae_ctx *ctx, cl_kernel k, cl_uint dims, const size_t *global,
               const size_t *local);
/* 1-D launch over n items: work-groups of ctx->launch_wg, or fewer when the
 * kernel allows fewer. */
int cae_launch_1d(cae_ctx *ctx, cl_kernel k, size_t n);
/* One work-group per row for row kernels taking a __local float scratch of
 * per_item floats per work-item as their last argument (set here): the
 * group size is the largest power of two within ctx->row_group, the
 * kernel's limit and the device's local memory. */
int cae_launch_rows(cae_ctx *ctx, cl_kernel k, cl_uint scratch_arg, size_t rows, size_t per_item);

/* cae_launch_1d of the context's kernel id, its arguments already set,
 * with the work-group limit asked when the kernel was made. */
int cae_launch_id_1d(cae_ctx *ctx, cae_kernel_id id, size_t n);
/* Set kernel id's arguments and launch it over n items (cae_launch_id_1d). */
int cae_run_1d(cae_ctx *ctx, cae_kernel_id id, size_t n, const cae_arg *args, size_t n_args);
/* A row kernel in the shape ctx->row_group asks for: item, a work-item per
 * row (cae_launch_1d), or group, a work-group per row whose scratch of
 * per_item floats per work-item follows args (cae_launch_rows). */
int cae_run_rows(cae_ctx *ctx, cae_kernel_id item, cae_kernel_id group, size_t rows,
                 size_t per_item, const cae_arg *args, size_t n_args);

/* Keep ev (a command just enqueued) under name for profiling; the event is
 * released here if it cannot be kept. */
int cae_prof_record(cae_ctx *ctx, cl_event ev, const char *name);
/* Release every kept event without reading it. */
void cae_prof_clear(cae_ctx *ctx);

/* Wait for everything enqueued. */
int cae_finish(cae_ctx *ctx);

#endif

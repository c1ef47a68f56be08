/* runtime.h: the OpenCL device, its queue, the embedded kernels and launches.
 *
 * One cae_ctx per process (per rank): the chosen device, an in-order queue,
 * the program built from every file in cl/ (compiled once per context, or
 * loaded from the on-disk binary cache) and the kernels looked up by name.
 *
 * Device buffers are passed as (cl_mem, element offset) pairs, CLBlast's
 * convention: a cae_buf. Kernels take each as two arguments,
 * `__global float *x, ulong x_off`, and start with `x += x_off;`.
 */
#ifndef CAE_RUNTIME_H
#define CAE_RUNTIME_H

#include "runtime/errors.h"
#include "runtime/tune_file.h"
#include <stddef.h>
#include <stdio.h>

typedef struct {
    cl_mem mem;   /* NULL means "absent" (an optional argument) */
    size_t off;   /* offset in elements (floats or ints), not bytes */
} cae_buf;

static inline cae_buf cae_buf_at(cae_buf b, size_t elements)
{
    b.off += elements;
    return b;
}

static inline cae_buf cae_buf_null(void)
{
    cae_buf b = {NULL, 0};
    return b;
}

typedef enum { CAE_GEMM_AUTO, CAE_GEMM_CLBLAST, CAE_GEMM_HOST } cae_gemm_choice;

typedef struct cae_kernel_slot {
    char name[64];
    cl_kernel kernel;
} cae_kernel_slot;

/* One profiled command (kept only while ctx->profiling is set): the event
 * and the kernel's name ("gemm", "gemm_batched", "native" for host BLAS). */
typedef struct {
    cl_event event;
    char name[64];
} cae_prof_event;

typedef struct cae_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    char device_name[256];
    char platform_name[256];
    int is_cpu;              /* CL_DEVICE_TYPE_CPU */
    int native_kernels;      /* CL_EXEC_NATIVE_KERNEL supported */
    cl_ulong max_alloc;      /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    cl_ulong global_mem;     /* CL_DEVICE_GLOBAL_MEM_SIZE */
    size_t max_work_group;   /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    cl_ulong local_mem;      /* CL_DEVICE_LOCAL_MEM_SIZE */
    cl_program program;
    cae_kernel_slot *kernels;
    size_t n_kernels, cap_kernels;
    cae_gemm_choice gemm;    /* resolved: CAE_GEMM_CLBLAST or CAE_GEMM_HOST */
    int attention_fused;     /* attention core (src/ops/mha.c): 1 fused kernel, 0 GEMMs */
    size_t row_group;        /* row kernels (LayerNorm, cross-entropy): 0 one row per work-item (CPUs),
                              * else one row per work-group of at most this size (GPUs) */
    cl_mem gemm_temp;        /* CLBlast temporary buffer, grown on demand */
    size_t gemm_temp_bytes;
    int profiling;           /* queue created with profiling enabled; while set, every
                              * launch keeps an event in prof_events (a program may clear
                              * it to launch without events on the profiling queue) */
    size_t launches;         /* kernels and GEMMs enqueued so far */
    /* device memory through cae_alloc/cae_release: now and the high-water mark */
    size_t dev_bytes, dev_bytes_peak;
    /* while profiling is set: one event per launch, drained by profile.c
     * (cae_profile_collect) or released by cae_prof_clear / cae_ctx_free */
    cae_prof_event *prof_events;
    size_t n_prof_events, cap_prof_events;
    /* tuned parameters (tune_file.h): what the tuning file held, or what the
     * options imposed; tune_file is empty when none was read */
    cae_tune tune;
    char tune_file[4096];
    size_t launch_wg;        /* cae_launch_1d's local size (default 64) */
    char build_options[512]; /* the program's build options, -D tunables included */
} cae_ctx;

typedef struct {
    cae_gemm_choice gemm;    /* --gemm */
    int profiling;
    int device_slot;         /* without CAE_CL_DEVICE: take default device number
                              * slot modulo their count (a rank's local rank); 0 = the first */
    int host_threads;        /* > 0: at most this many BLAS threads (ranks sharing a CPU) */
    const cae_tune *tune;    /* not NULL: use these parameters and read no tuning file
                              * (cae-cl-tune measuring candidates) */
} cae_ctx_options;

/* Parse "auto", "clblast" or "host"; -1 on anything else. */
int cae_gemm_choice_parse(const char *text, cae_gemm_choice *out);

/* Pick the device from CAE_CL_PLATFORM / CAE_CL_DEVICE (an index or a
 * case-insensitive substring of the name; default: the first GPU, else the
 * first device), create the context and queue and build the kernels. */
int cae_ctx_init(cae_ctx *ctx, const cae_ctx_options *opt);
void cae_ctx_free(cae_ctx *ctx);

/* Print every platform and device with its indices (--list-devices). */
int cae_list_devices(FILE *out);

/* The kernel of this name from the program; NULL (reported) if missing. */
cl_kernel cae_kernel(cae_ctx *ctx, const char *name);

/* Argument setters: *index advances past what was set (a cae_buf takes two
 * slots: the cl_mem and a ulong element offset). An absent cae_buf is
 * passed as a NULL cl_mem, which kernels must not dereference. */
int cae_arg_buf(cl_kernel k, cl_uint *index, cae_buf b);
int cae_arg_int(cl_kernel k, cl_uint *index, int v);
int cae_arg_uint(cl_kernel k, cl_uint *index, cl_uint v);
int cae_arg_ulong(cl_kernel k, cl_uint *index, cl_ulong v);
int cae_arg_float(cl_kernel k, cl_uint *index, float v);
int cae_arg_local(cl_kernel k, cl_uint *index, size_t bytes);

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

/* Keep ev (a command just enqueued) under name for profiling; the event is
 * released here if it cannot be kept. */
int cae_prof_record(cae_ctx *ctx, cl_event ev, const char *name);
/* Release every kept event without reading it. */
void cae_prof_clear(cae_ctx *ctx);

/* Memory. cae_alloc refuses sizes above max_alloc with a clear error.
 * Both keep ctx->dev_bytes and dev_bytes_peak (cae_release finds the
 * buffer's context among the live cae_ctx). */
int cae_alloc(cae_ctx *ctx, size_t bytes, cl_mem *out);
void cae_release(cl_mem *mem);
int cae_write(cae_ctx *ctx, cae_buf dst, const void *src, size_t bytes);   /* blocking */
int cae_read(cae_ctx *ctx, void *dst, cae_buf src, size_t bytes);          /* blocking */
int cae_fill_float(cae_ctx *ctx, cae_buf dst, float value, size_t n);
/* zeroing and copies are kernels (not clEnqueueFillBuffer/CopyBuffer), so
 * kernel checkers see the bytes they write as initialized */
int cae_fill_zero(cae_ctx *ctx, cae_buf dst, size_t n_elements);            /* 4-byte elements */
int cae_copy(cae_ctx *ctx, cae_buf dst, cae_buf src, size_t n_elements);     /* 4-byte elements */
int cae_finish(cae_ctx *ctx);

#endif

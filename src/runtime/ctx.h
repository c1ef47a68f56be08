/* ctx.h: the state every runtime module shares, and the buffer convention.
 *
 * One cae_ctx per process (per rank): the chosen device (device.c), the
 * program and its kernels (program.c), the queue and its launches
 * (launch.c), the memory counters (memory.c), the GEMM back end's state
 * (gemm.c). This header only describes it; runtime.h creates and frees it.
 * It includes no other runtime module, so each of them can include it.
 *
 * Device buffers are passed as (cl_mem, element offset) pairs, CLBlast's
 * convention: a cae_buf. Kernels take each as two arguments,
 * `__global float *x, ulong x_off`, and start with `x += x_off;`.
 */
#ifndef CAE_CTX_H
#define CAE_CTX_H

#include "runtime/errors.h"
#include "runtime/kernels.h"
#include "runtime/tune_file.h"
#include <stddef.h>

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

/* One profiled command (kept only while ctx->profiling is set): the event
 * and the kernel's name ("gemm", "gemm_batched", "native" for host BLAS). */
typedef struct {
    cl_event event;
    char name[64];
} cae_prof_event;

/* runtime/gemm.c's per-context state (back end, CLBlast's temporary buffer) */
struct cae_gemm;

typedef struct cae_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    char device_name[256];
    char platform_name[256];
    int cpu_defaults;        /* a CPU device, taking the CPU defaults (not under
                              * CAE_CL_NATIVE_KERNELS=0): device.c decides */
    int native_kernels;      /* CL_EXEC_NATIVE_KERNEL supported (never under
                              * CAE_CL_NATIVE_KERNELS=0) */
    cl_ulong max_alloc;      /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    cl_ulong global_mem;     /* CL_DEVICE_GLOBAL_MEM_SIZE */
    size_t max_work_group;   /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    cl_ulong local_mem;      /* CL_DEVICE_LOCAL_MEM_SIZE */
    cl_program program;
    cl_kernel kernel[CAE_KERNEL_COUNT]; /* every kernel, made with the program (kernels.h) */
    size_t kernel_wg[CAE_KERNEL_COUNT]; /* each one's CL_KERNEL_WORK_GROUP_SIZE, asked once */
    struct cae_gemm *gemm;   /* NULL until cae_gemm_init; cae_gemm_backend reads it */
    int attention;           /* the attention core: src/ops/mha.c resolves it on first
                              * use and owns its values; 0 until then */
    size_t row_group;        /* row kernels (LayerNorm, cross-entropy): 0 one row per work-item (CPUs),
                              * else one row per work-group of at most this size (GPUs) */
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
    char build_options[512]; /* the program's build options, -D limits and tunables included */
} cae_ctx;

#endif

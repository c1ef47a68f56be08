/* runtime.h: the OpenCL runtime as the rest of the tree sees it.
 *
 * A cae_ctx (ctx.h) is one process's (one rank's) device, in-order queue,
 * program built from every file in cl/ and GEMM back end. Its parts, lowest
 * first, each in a module of its own:
 *   ctx.h      the shared state and the cae_buf convention
 *   device.h   the device's choice and its limits
 *   program.h  build options, the program (or its cached binary), kernels
 *   launch.h   kernel arguments, launches, profiling events
 *   memory.h   device buffers, reads, writes, fills
 *   gemm.h     the matrix multiply on CLBlast or the host BLAS
 * This header includes them all and puts them together.
 */
#ifndef CAE_RUNTIME_H
#define CAE_RUNTIME_H

#include "runtime/ctx.h"
#include "runtime/device.h"
#include "runtime/gemm.h"
#include "runtime/launch.h"
#include "runtime/memory.h"
#include "runtime/program.h"

typedef struct {
    cae_gemm_choice gemm;    /* --gemm */
    int profiling;
    int device_slot;         /* without CAE_CL_DEVICE: take default device number
                              * slot modulo their count (a rank's local rank); 0 = the first */
    int host_threads;        /* > 0: at most this many BLAS threads (ranks sharing a CPU) */
    const cae_tune *tune;    /* not NULL: use these parameters and read no tuning file
                              * (cae-cl-tune measuring candidates) */
} cae_ctx_options;

/* Pick the device (device.h), create the context and queue, build the
 * kernels (program.h) and prepare the GEMM back end (gemm.h). */
int cae_ctx_init(cae_ctx *ctx, const cae_ctx_options *opt);
void cae_ctx_free(cae_ctx *ctx);

#endif

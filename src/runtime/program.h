/* program.h: the program built from every file in cl/ and its kernels.
 *
 * The sources are embedded at build time (cl_sources.c); CAE_CL_KERNEL_DIR
 * reads them from that folder instead (development). The build options are
 * the base options, the limits host and kernels share (kernels.h) and the
 * tuned -D defines (tune_file.h); they are part of the binary cache's key
 * (kernel_cache.h).
 */
#ifndef CAE_PROGRAM_H
#define CAE_PROGRAM_H

#include "runtime/ctx.h"

/* Take the tuned parameters (imposed when not NULL, else the device's
 * tuning file) and set ctx->tune, tune_file, build_options and launch_wg.
 * Runs before cae_program_build. */
void cae_program_tune(cae_ctx *ctx, const cae_tune *imposed);
/* Build the program for ctx's device (or load its cached binary) and
 * create every kernel of kernels.h in ctx->kernel. */
int cae_program_build(cae_ctx *ctx);
/* Release the kernels and the program. */
void cae_program_free(cae_ctx *ctx);

/* The kernel of this name (a search: for tests and tools; the library
 * uses ctx->kernel[id]); NULL (reported) if kernels.h lists none. */
cl_kernel cae_kernel(cae_ctx *ctx, const char *name);

#endif

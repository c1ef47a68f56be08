/* tune_candidates.h: the CLBlast parameter sets cae-cl-tune tries, for
 * the device of ctx: distinct and valid for its work-group and local
 * memory limits. */
#ifndef CAE_TUNE_CANDIDATES_H
#define CAE_TUNE_CANDIDATES_H

#include "runtime/runtime.h"
#include "runtime/tune_file.h"

#include <stddef.h>

/* Up to cap Xgemm sets into out: the tuning file's set in use (in_use),
 * the CPU default set, its 64x64 variant and two common GPU shapes, then
 * random valid sets; the count. */
size_t cae_tune_xgemm_candidates(const cae_ctx *ctx, const cae_tune *in_use,
                                 size_t (*out)[CAE_TUNE_XGEMM_N], size_t cap);
/* Up to cap XgemmDirect sets, the same way; the count. */
size_t cae_tune_direct_candidates(const cae_ctx *ctx, const cae_tune *in_use,
                                  size_t (*out)[CAE_TUNE_DIRECT_N], size_t cap);

#endif

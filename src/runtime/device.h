/* device.h: choosing the OpenCL device and querying it.
 *
 * CAE_CL_PLATFORM / CAE_CL_DEVICE select the device (an index or a
 * case-insensitive substring of the name; default: the first GPU, else the
 * first device); CAE_CL_ROW_KERNELS=item|group overrides the row-kernel
 * shape chosen for its type. CAE_CL_NATIVE_KERNELS=0 takes any device as a
 * GPU without native kernels (CLBlast GEMMs, the fused attention core, a
 * work-group per row): the GPU path on a CPU device; unset or 1, the device
 * as detected; another value is an error.
 */
#ifndef CAE_DEVICE_H
#define CAE_DEVICE_H

#include "runtime/ctx.h"

#include <stdio.h>

/* Choose the device (number slot modulo the candidates when
 * CAE_CL_DEVICE is unset) and fill ctx's platform, device, names, limits,
 * cpu_defaults, native_kernels and row_group (no OpenCL context yet). */
int cae_device_open(cae_ctx *ctx, int slot);

/* Print every platform and device with its indices (--list-devices). */
int cae_list_devices(FILE *out);

#endif

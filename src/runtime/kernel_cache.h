/* kernel_cache.h: the on-disk cache of compiled OpenCL program binaries.
 *
 * Key: a 128-bit hash of every kernel source, the build options, the device
 * name and version, the driver version and the platform. Folder:
 * $CAE_CL_CACHE_DIR, else $XDG_CACHE_HOME/cae-cl, else ~/.cache/cae-cl.
 * CAE_CL_NO_CACHE=1 disables it. Entries are written to a temporary file and
 * renamed, so a reader never sees a partial binary. Each entry carries its
 * binary's size and checksum, checked before the driver sees the binary (some
 * drivers abort on a damaged one): an entry that fails (truncated, damaged)
 * gets one warning, is removed and rebuilt from source. The format is part
 * of the key, so entries of an older format are simply never read. A binary
 * the driver refuses is ignored and rebuilt too.
 */
#ifndef CAE_KERNEL_CACHE_H
#define CAE_KERNEL_CACHE_H

#include "runtime/errors.h"
#include <stddef.h>

typedef struct {
    char path[4096]; /* the entry's file; empty when the cache is off */
} cae_kernel_cache;

/* Compute the entry path for these inputs (never fails: a cache that cannot
 * be used is simply off). */
void cae_kernel_cache_open(cae_kernel_cache *kc, cl_device_id device,
                           cl_platform_id platform, const char *const *sources,
                           size_t n_sources, const char *options);
/* Load the entry: returns a malloc'd binary and its size, or NULL (a miss,
 * or a bad entry: warned about and removed). */
unsigned char *cae_kernel_cache_load(const cae_kernel_cache *kc, size_t *size);
/* Store the built program's binary; failures only warn. */
void cae_kernel_cache_store(const cae_kernel_cache *kc, cl_program program);

/* The cache folder: $CAE_CL_CACHE_DIR, else $XDG_CACHE_HOME/cae-cl, else
 * ~/.cache/cae-cl; -1 when none can be named. */
int cae_cache_folder(char *out, size_t size);
/* mkdir -p; 0 when the folder exists afterwards. */
int cae_make_folder(const char *path);
/* 32 hex digits naming this device and driver (name, versions, vendor,
 * platform): the same device key the binaries are hashed with. */
void cae_device_key(cl_device_id device, cl_platform_id platform, char out[33]);

#endif

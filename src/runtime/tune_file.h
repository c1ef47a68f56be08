/* tune_file.h: tuned parameters of one device and driver, on disk.
 *
 * cae-cl-tune writes them; cae_ctx_init reads them. The file is JSON:
 *   {"format": "cae-cl-tune 1", "device": ..., "device_version": ...,
 *    "driver": ..., "platform": ...,
 *    "clblast": {"Xgemm": {name: value, ...}, "XgemmDirect": {...},
 *                "GemmRoutine": {"XGEMM_MIN_INDIRECT_SIZE": n}},
 *    "kernels": {"work_group_1d": n, "defines": {"GELU_VEC": 0|1, ...}},
 *    ... what the tuner measured, for people (ignored on reading)}
 * Path: $CAE_CL_TUNE_FILE, else <cache folder>/tune/<device key>.json
 * (kernel_cache.h names the folder and the key). Every section is optional;
 * a file that is not valid JSON, names another device or driver, or holds
 * an unknown or incomplete parameter set is refused as a whole.
 */
#ifndef CAE_TUNE_FILE_H
#define CAE_TUNE_FILE_H

#include "runtime/errors.h"
#include <stddef.h>

#define CAE_TUNE_XGEMM_N 16
#define CAE_TUNE_DIRECT_N 10
#define CAE_TUNE_DEFINES_N 2

/* CLBlast 1.5's parameter names, in the order the values are kept */
extern const char *const cae_tune_xgemm_names[CAE_TUNE_XGEMM_N];
extern const char *const cae_tune_direct_names[CAE_TUNE_DIRECT_N];
/* our kernels' -D tunables (0 or 1 each); their defaults live in cl/ */
extern const char *const cae_tune_define_names[CAE_TUNE_DEFINES_N];

typedef struct {
    int have_xgemm, have_direct, have_min_indirect, have_wg;
    size_t xgemm[CAE_TUNE_XGEMM_N];
    size_t direct[CAE_TUNE_DIRECT_N];
    size_t min_indirect;  /* GemmRoutine XGEMM_MIN_INDIRECT_SIZE */
    size_t work_group_1d; /* local size of cae_launch_1d */
    int have_define[CAE_TUNE_DEFINES_N];
    int define[CAE_TUNE_DEFINES_N];
} cae_tune;

/* The identity a file must match. */
typedef struct {
    char device[256], device_version[256], driver[256], platform[256];
    char key[33];
    size_t max_work_group; /* limits the parameter sets are checked against */
    cl_ulong local_mem;
} cae_tune_device;

int cae_tune_device_query(cl_device_id device, cl_platform_id platform, cae_tune_device *out);

/* The file's path for this device (CAE_CL_TUNE_FILE first); -1 when no
 * folder can be named. The folder is not created. */
int cae_tune_path(const cae_tune_device *dev, char *out, size_t size);

/* 1: loaded into *t; 0: no file at path; -1: the file exists but is refused
 * (one warning line naming it has been printed; *t is cleared). */
int cae_tune_load(const char *path, const cae_tune_device *dev, cae_tune *t);

/* Write t for dev to path (folders created, temp file + rename); extra, when
 * not NULL, is a jansson object merged in as "measured". 0 or -1 (reported). */
int cae_tune_save(const char *path, const cae_tune_device *dev, const cae_tune *t, void *extra);

/* CLBlast's constraints on an Xgemm / XgemmDirect set (values in name
 * order) and the device's work-group and local-memory limits: 1 if valid. */
int cae_tune_xgemm_valid(const size_t *v, size_t max_work_group, unsigned long long local_mem);
int cae_tune_direct_valid(const size_t *v, size_t max_work_group, unsigned long long local_mem);

/* " -DNAME=v" for every define t holds, appended to out (size bytes). */
void cae_tune_defines_options(const cae_tune *t, char *out, size_t size);

#endif

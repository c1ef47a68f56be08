/* device.c: which OpenCL device a context runs on, and what the runtime
 * reads about it (names, limits, native kernels, the row-kernel shape), and
 * whether the device takes the CPU defaults or a GPU's
 * (CAE_CL_NATIVE_KERNELS). */
#include "runtime/device.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int get_platforms(cl_platform_id **out, cl_uint *n)
{
    cl_int err = clGetPlatformIDs(0, NULL, n);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (err == CL_SUCCESS && *n == 0)) {
        cae_errorf("no OpenCL platform found: install an OpenCL driver (for the CPU: "
                   "apt-get install pocl-opencl-icd) and check /etc/OpenCL/vendors");
        return -1;
    }
    CL_CHECK(err);
    *out = calloc(*n, sizeof **out);
    if (!*out) {
        cae_errorf("out of host memory listing platforms");
        return -1;
    }
    CL_CHECK(clGetPlatformIDs(*n, *out, NULL));
    return 0;
}

static int get_devices(cl_platform_id p, cl_device_id **out, cl_uint *n)
{
    cl_int err = clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, NULL, n);
    if (err == CL_DEVICE_NOT_FOUND) {
        *n = 0;
        *out = NULL;
        return 0;
    }
    CL_CHECK(err);
    *out = calloc(*n ? *n : 1, sizeof **out);
    if (!*out) {
        cae_errorf("out of host memory listing devices");
        return -1;
    }
    CL_CHECK(clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, *n, *out, NULL));
    return 0;
}

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

/* "3" selects index 3; anything else is a name substring. */
static int parse_index(const char *s, long *out)
{
    char *end;
    if (!*s)
        return -1;
    errno = 0;
    *out = strtol(s, &end, 10);
    return (*end == '\0' && errno == 0 && *out >= 0) ? 0 : -1;
}

static int matches(const char *selector, const char *name, long i)
{
    long want;
    if (!selector || !*selector)
        return 1;
    if (parse_index(selector, &want) == 0)
        return want == i;
    return contains_nocase(name, selector);
}

int cae_list_devices(FILE *out)
{
    cl_platform_id *plats = NULL;
    cl_uint np = 0;
    CAE_TRY(get_platforms(&plats, &np));
    for (cl_uint p = 0; p < np; p++) {
        char pname[256] = "";
        cl_device_id *devs = NULL;
        cl_uint nd = 0;
        clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
        fprintf(out, "platform %u: %s\n", p, pname);
        if (get_devices(plats[p], &devs, &nd) != 0) {
            free(plats);
            return -1;
        }
        for (cl_uint d = 0; d < nd; d++) {
            char dname[256] = "", ver[256] = "";
            cl_device_type type = 0;
            cl_ulong mem = 0;
            clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof dname - 1, dname, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_VERSION, sizeof ver - 1, ver, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
            clGetDeviceInfo(devs[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            fprintf(out, "  device %u: %s [%s, %s, %.1f GiB]\n", d, dname,
                    (type & CL_DEVICE_TYPE_GPU) ? "GPU" : (type & CL_DEVICE_TYPE_CPU) ? "CPU" : "other",
                    ver, (double)mem / (1024.0 * 1024.0 * 1024.0));
        }
        free(devs);
    }
    free(plats);
    fprintf(out, "select with CAE_CL_PLATFORM and CAE_CL_DEVICE (an index or part of the name)\n");
    return 0;
}

/* Choose per CAE_CL_PLATFORM / CAE_CL_DEVICE; by default the GPUs (else
 * every device) of the matching platforms, and of those number slot modulo
 * their count (slot 0: the first GPU, else the first device). */
static int choose_device(cae_ctx *ctx, int slot)
{
    const char *psel = getenv("CAE_CL_PLATFORM");
    const char *dsel = getenv("CAE_CL_DEVICE");
    int explicit_device = dsel && *dsel;
    cl_platform_id *plats = NULL;
    cl_uint np = 0;
    int found = 0;

    CAE_TRY(get_platforms(&plats, &np));
    /* pass 0: GPUs only (the default choice); pass 1: any device */
    for (int pass = explicit_device ? 1 : 0; pass < 2 && !found; pass++) {
        long count = 0, want;
        /* count the candidates first, so the slot wraps around them */
        for (int counting = 1; counting >= 0 && !found; counting--) {
            long seen = 0;
            want = (counting || count == 0) ? -1 : (explicit_device ? 0 : slot % count);
            for (cl_uint p = 0; p < np && !found; p++) {
                char pname[256] = "";
                cl_device_id *devs = NULL;
                cl_uint nd = 0;
                clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
                if (!matches(psel, pname, (long)p))
                    continue;
                if (get_devices(plats[p], &devs, &nd) != 0) {
                    free(plats);
                    return -1;
                }
                for (cl_uint d = 0; d < nd && !found; d++) {
                    char dname[256] = "";
                    cl_device_type type = 0;
                    clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof dname - 1, dname, NULL);
                    clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof type, &type, NULL);
                    if (!matches(dsel, dname, (long)d))
                        continue;
                    if (pass == 0 && !(type & CL_DEVICE_TYPE_GPU))
                        continue;
                    if (!counting && seen == want) {
                        ctx->platform = plats[p];
                        ctx->device = devs[d];
                        found = 1;
                    }
                    seen++;
                }
                free(devs);
            }
            if (counting)
                count = seen;
        }
    }
    free(plats);
    if (!found) {
        cae_errorf("no OpenCL device matches CAE_CL_PLATFORM='%s' CAE_CL_DEVICE='%s' "
                   "(run with --list-devices to see them)",
                   psel ? psel : "", dsel ? dsel : "");
        return -1;
    }
    return 0;
}

/* The one place that reads the device's type and native-kernel support for
 * a default: every default that differs between CPUs and GPUs (--gemm auto,
 * the attention core, the row kernels, CLBlast's parameters, the
 * tokenizer's kernel shapes) reads ctx->cpu_defaults and ctx->native_kernels.
 * CAE_CL_NATIVE_KERNELS=0 is the GPU mode: the device is taken as one
 * without native kernels and with a GPU's defaults, so a CPU device (PoCL)
 * runs the path a GPU runs and --gemm host is refused as on a GPU; unset or
 * 1, the device as detected. */
static int choose_defaults(cae_ctx *ctx, cl_device_type type, cl_device_exec_capabilities exec)
{
    const char *sel = getenv("CAE_CL_NATIVE_KERNELS");
    int detected = 1;
    if (sel && *sel) {
        if (strcmp(sel, "0") != 0 && strcmp(sel, "1") != 0) {
            cae_errorf("CAE_CL_NATIVE_KERNELS='%s': expected 0 (the GPU path) or 1 (as detected)",
                       sel);
            return -1;
        }
        detected = strcmp(sel, "1") == 0;
    }
    ctx->cpu_defaults = detected && (type & CL_DEVICE_TYPE_CPU) != 0;
    ctx->native_kernels = detected && (exec & CL_EXEC_NATIVE_KERNEL) != 0;
    return 0;
}

/* Row kernels: one row per work-item on CPUs (a row loop with vector loads;
 * PoCL runs work-group reductions ten times slower), one row per work-group
 * elsewhere (coalesced reads, tree sums). CAE_CL_ROW_KERNELS=item|group
 * overrides. */
static int choose_row_kernels(cae_ctx *ctx)
{
    const char *sel = getenv("CAE_CL_ROW_KERNELS");
    int group = !ctx->cpu_defaults;
    if (sel && *sel) {
        if (strcmp(sel, "item") != 0 && strcmp(sel, "group") != 0) {
            cae_errorf("CAE_CL_ROW_KERNELS='%s': expected 'item' or 'group'", sel);
            return -1;
        }
        group = strcmp(sel, "group") == 0;
    }
    ctx->row_group = group ? 256 : 0;
    return 0;
}

static int query_device(cae_ctx *ctx)
{
    cl_device_type type;
    cl_device_exec_capabilities exec;
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_NAME, sizeof ctx->device_name - 1,
                             ctx->device_name, NULL));
    CL_CHECK(clGetPlatformInfo(ctx->platform, CL_PLATFORM_NAME, sizeof ctx->platform_name - 1,
                               ctx->platform_name, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_TYPE, sizeof type, &type, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_EXECUTION_CAPABILITIES, sizeof exec, &exec, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ctx->max_alloc,
                             &ctx->max_alloc, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof ctx->global_mem,
                             &ctx->global_mem, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof ctx->max_work_group,
                             &ctx->max_work_group, NULL));
    CL_CHECK(clGetDeviceInfo(ctx->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ctx->local_mem,
                             &ctx->local_mem, NULL));
    CAE_TRY(choose_defaults(ctx, type, exec));
    return choose_row_kernels(ctx);
}

int cae_device_open(cae_ctx *ctx, int slot)
{
    CAE_TRY(choose_device(ctx, slot));
    return query_device(ctx);
}

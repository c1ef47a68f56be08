/* kernel_cache.c: on-disk OpenCL program binaries (see kernel_cache.h). */
#include "runtime/kernel_cache.h"
#include "runtime/files.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Two FNV-1a streams with different offsets give a 128-bit key. */
typedef struct {
    uint64_t a, b;
} hash128;

static void hash_bytes(hash128 *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ULL;
        h->b = (h->b ^ p[i]) * 0x100000001b3ULL;
    }
    /* a separator so "ab"+"c" and "a"+"bc" differ */
    h->a = (h->a ^ 0xff) * 0x100000001b3ULL;
    h->b = (h->b ^ 0xfe) * 0x100000001b3ULL;
}

static void hash_string(hash128 *h, const char *s)
{
    hash_bytes(h, s, strlen(s));
}

static void hash_device_info(hash128 *h, cl_device_id device, cl_device_info what)
{
    char text[1024] = "";
    if (clGetDeviceInfo(device, what, sizeof text - 1, text, NULL) != CL_SUCCESS)
        strcpy(text, "?");
    hash_string(h, text);
}

static void hash_platform_info(hash128 *h, cl_platform_id platform, cl_platform_info what)
{
    char text[1024] = "";
    if (clGetPlatformInfo(platform, what, sizeof text - 1, text, NULL) != CL_SUCCESS)
        strcpy(text, "?");
    hash_string(h, text);
}

/* mkdir -p; returns 0 when the folder exists afterwards. */
int cae_make_folder(const char *path)
{
    char tmp[4096];
    if (strlen(path) >= sizeof tmp)
        return -1;
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

int cae_cache_folder(char *out, size_t size)
{
    const char *dir = getenv("CAE_CL_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (dir && *dir)
        n = snprintf(out, size, "%s", dir);
    else if (xdg && *xdg)
        n = snprintf(out, size, "%s/cae-cl", xdg);
    else if (home && *home)
        n = snprintf(out, size, "%s/.cache/cae-cl", home);
    else
        return -1;
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

static void hash_device(hash128 *h, cl_device_id device, cl_platform_id platform)
{
    hash_device_info(h, device, CL_DEVICE_NAME);
    hash_device_info(h, device, CL_DEVICE_VERSION);
    hash_device_info(h, device, CL_DRIVER_VERSION);
    hash_device_info(h, device, CL_DEVICE_VENDOR);
    hash_platform_info(h, platform, CL_PLATFORM_NAME);
    hash_platform_info(h, platform, CL_PLATFORM_VERSION);
}

void cae_device_key(cl_device_id device, cl_platform_id platform, char out[33])
{
    hash128 h = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
    hash_device(&h, device, platform);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);
}

void cae_kernel_cache_open(cae_kernel_cache *kc, cl_device_id device,
                           cl_platform_id platform, const char *const *sources,
                           size_t n_sources, const char *options)
{
    const char *off = getenv("CAE_CL_NO_CACHE");
    char folder[3800];
    hash128 h = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};

    kc->path[0] = '\0';
    if (off && *off && strcmp(off, "0") != 0)
        return;
    if (cae_cache_folder(folder, sizeof folder) != 0)
        return;
    for (size_t i = 0; i < n_sources; i++)
        hash_string(&h, sources[i]);
    hash_string(&h, options);
    hash_device(&h, device, platform);
    if (cae_make_folder(folder) != 0) {
        cae_errorf("warning: kernel cache folder %s: %s; compiling without the cache",
                   folder, strerror(errno));
        return;
    }
    snprintf(kc->path, sizeof kc->path, "%s/%016llx%016llx.bin", folder,
             (unsigned long long)h.a, (unsigned long long)h.b);
}

unsigned char *cae_kernel_cache_load(const cae_kernel_cache *kc, size_t *size)
{
    struct stat st;
    char why[256];
    FILE *f;
    long len;
    unsigned char *data;

    if (!kc->path[0])
        return NULL;
    f = cae_fopen_regular(kc->path, &st, why, sizeof why);
    if (!f) {
        if (errno != ENOENT) /* no entry is a plain miss; anything else is worth a line */
            cae_errorf("warning: kernel cache entry %s: %s; compiling from source", kc->path, why);
        return NULL;
    }
    if ((len = (long)st.st_size) <= 0) {
        fclose(f);
        return NULL;
    }
    data = malloc((size_t)len);
    if (!data || fread(data, 1, (size_t)len, f) != (size_t)len) {
        free(data);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *size = (size_t)len;
    return data;
}

void cae_kernel_cache_store(const cae_kernel_cache *kc, cl_program program)
{
    size_t size = 0;
    unsigned char *data = NULL;
    char tmp[4200];
    FILE *f = NULL;

    if (!kc->path[0])
        return;
    /* one device per program: one binary */
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return;
    data = malloc(size);
    if (!data)
        return;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof data, &data, NULL) != CL_SUCCESS)
        goto out;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", kc->path, (long)getpid());
    f = fopen(tmp, "wb");
    if (!f)
        goto fail;
    if (fwrite(data, 1, size, f) != size || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        unlink(tmp);
        goto fail;
    }
    if (fclose(f) != 0 || rename(tmp, kc->path) != 0) {
        unlink(tmp);
        goto fail;
    }
    goto out;
fail:
    cae_errorf("warning: could not write kernel cache entry %s: %s", kc->path, strerror(errno));
out:
    free(data);
}

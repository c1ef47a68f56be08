/* kernel_cache.c: on-disk OpenCL program binaries (see kernel_cache.h). */
#include "runtime/kernel_cache.h"
#include "runtime/digest.h"
#include "runtime/files.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An entry: "CAECLKC" + format byte, the binary's size (8 bytes, little
 * endian), the FNV-1a pair of the binary (2 x 8 bytes), then the binary. A
 * driver handed a truncated or damaged binary may abort the process, so the
 * size and checksum are checked before it sees one. */
static const unsigned char entry_magic[8] = {'C', 'A', 'E', 'C', 'L', 'K', 'C', 2};
enum { ENTRY_HEADER = 32 };

/* Two FNV-1a streams with different offsets give a 128-bit key. */
typedef struct {
    uint64_t a, b;
} hash128;

static void hash_bytes(hash128 *h, const void *data, size_t n)
{
    /* a separator so "ab"+"c" and "a"+"bc" differ */
    h->a = cae_digest(cae_digest(h->a, data, n), "\xff", 1);
    h->b = cae_digest(cae_digest(h->b, data, n), "\xfe", 1);
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
    hash128 h = {CAE_DIGEST_INIT, 0x84222325cbf29ce4ULL};
    hash_device(&h, device, platform);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.a, (unsigned long long)h.b);
}

void cae_kernel_cache_open(cae_kernel_cache *kc, cl_device_id device,
                           cl_platform_id platform, const char *const *sources,
                           size_t n_sources, const char *options)
{
    const char *off = getenv("CAE_CL_NO_CACHE");
    char folder[3800];
    hash128 h = {CAE_DIGEST_INIT, 0x84222325cbf29ce4ULL};

    kc->path[0] = '\0';
    if (off && *off && strcmp(off, "0") != 0)
        return;
    if (cae_cache_folder(folder, sizeof folder) != 0)
        return;
    /* the entry format is part of the key: entries of an older format are
     * never read (they stay behind, unused) rather than warned about */
    hash_bytes(&h, entry_magic, sizeof entry_magic);
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

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void entry_header(unsigned char *out, const unsigned char *bin, size_t size)
{
    hash128 h = {CAE_DIGEST_INIT, 0x84222325cbf29ce4ULL};
    hash_bytes(&h, bin, size);
    memcpy(out, entry_magic, 8);
    put_le64(out + 8, (uint64_t)size);
    put_le64(out + 16, h.a);
    put_le64(out + 24, h.b);
}

/* NULL when data (len bytes) is a whole, intact entry, else what is wrong */
static const char *entry_problem(const unsigned char *data, size_t len)
{
    unsigned char want[ENTRY_HEADER];

    if (len < ENTRY_HEADER || memcmp(data, entry_magic, 8) != 0)
        return "not a cache entry (no header)";
    if (get_le64(data + 8) != (uint64_t)(len - ENTRY_HEADER))
        return "truncated or padded (size does not match its header)";
    entry_header(want, data + ENTRY_HEADER, len - ENTRY_HEADER);
    if (memcmp(want, data, ENTRY_HEADER) != 0)
        return "checksum mismatch";
    return NULL;
}

unsigned char *cae_kernel_cache_load(const cae_kernel_cache *kc, size_t *size)
{
    struct stat st;
    char why[256];
    const char *bad = why;
    unsigned char *data = NULL;
    size_t len = 0;
    FILE *f;

    if (!kc->path[0])
        return NULL;
    f = cae_fopen_regular(kc->path, &st, why, sizeof why);
    if (!f && errno == ENOENT)
        return NULL; /* a miss */
    if (f) {
        len = (size_t)st.st_size;
        data = malloc(len > 0 ? len : 1);
        if (!data || fread(data, 1, len, f) != len)
            snprintf(why, sizeof why, "cannot read: %s", data ? strerror(errno) : "out of memory");
        else
            bad = entry_problem(data, len);
        fclose(f);
    }
    if (bad) {
        cae_errorf("warning: kernel cache entry %s: %s; removed, compiling from source", kc->path,
                   bad);
        unlink(kc->path);
        free(data);
        return NULL;
    }
    *size = len - ENTRY_HEADER;
    memmove(data, data + ENTRY_HEADER, *size);
    return data;
}

void cae_kernel_cache_store(const cae_kernel_cache *kc, cl_program program)
{
    size_t size = 0;
    unsigned char *data = NULL, header[ENTRY_HEADER];
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
    f = cae_replace_open(kc->path, "wb", tmp, sizeof tmp);
    if (!f)
        goto fail;
    entry_header(header, data, size);
    if (fwrite(header, 1, ENTRY_HEADER, f) != ENTRY_HEADER || fwrite(data, 1, size, f) != size) {
        cae_replace_abort(f, tmp);
        goto fail;
    }
    if (cae_replace_commit(f, tmp, kc->path) != 0)
        goto fail;
    goto out;
fail:
    cae_errorf("warning: could not write kernel cache entry %s: %s", kc->path, strerror(errno));
out:
    free(data);
}

/* tune_file.c: reading and writing the tuning file (see tune_file.h). */
#include "runtime/tune_file.h"

#include "runtime/kernel_cache.h"
#include "runtime/files.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const cae_tune_xgemm_names[CAE_TUNE_XGEMM_N] = {
    "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
    "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"};
const char *const cae_tune_direct_names[CAE_TUNE_DIRECT_N] = {
    "KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"};
const char *const cae_tune_define_names[CAE_TUNE_DEFINES_N] = {"GELU_VEC", "LAYERNORM_VEC"};

#define FORMAT "cae-cl-tune 1"

/* indices into the name lists above */
enum { GEMMK, KREG, KWG, KWI, MDIMA, MDIMC, MWG, NDIMB, NDIMC, NWG, SA, SB, STRM, STRN, VWM, VWN };
enum { KWID, MDIMAD, MDIMCD, NDIMBD, NDIMCD, PADA, PADB, VWMD, VWND, WGD };

static int multiple(size_t x, size_t of)
{
    return of != 0 && x % of == 0;
}

/* Xgemm's constraints (CLBlast's tuner, kernels 0 and 1) */
int cae_tune_xgemm_valid(const size_t *v, size_t max_work_group, unsigned long long local_mem)
{
    size_t local = 4 * (v[SA] * v[KWG] * v[MWG] + v[SB] * v[KWG] * v[NWG]);
    if (v[GEMMK] > 1 || v[MDIMA] == 0 || v[NDIMB] == 0 || !multiple(v[KWG], v[KWI]) ||
        !multiple(v[MWG], v[MDIMC] * v[VWM]) || !multiple(v[NWG], v[NDIMC] * v[VWN]) ||
        !multiple(v[MWG], v[MDIMA] * v[VWM]) || !multiple(v[NWG], v[NDIMB] * v[VWN]))
        return 0;
    if (v[GEMMK] == 0 && (!multiple(v[KWG], (v[MDIMC] * v[NDIMC]) / v[MDIMA]) ||
                          !multiple(v[KWG], (v[MDIMC] * v[NDIMC]) / v[NDIMB])))
        return 0;
    if (v[GEMMK] == 1 && (!multiple(v[KREG], v[VWN]) || v[MDIMC] != v[MDIMA] ||
                          v[NDIMC] != v[NDIMB] || v[SA] || v[SB]))
        return 0;
    return v[SA] <= 1 && v[SB] <= 1 && v[STRM] <= 1 && v[STRN] <= 1 &&
           v[MDIMC] * v[NDIMC] <= max_work_group && local <= local_mem;
}

int cae_tune_direct_valid(const size_t *v, size_t max_work_group, unsigned long long local_mem)
{
    size_t local;
    if (v[MDIMAD] == 0 || v[NDIMBD] == 0 || v[PADA] > 1 || v[PADB] > 1)
        return 0;
    local = 4 * (v[WGD] * (v[WGD] + v[PADA]) + v[WGD] * (v[WGD] + v[PADB]));
    return multiple(v[WGD], v[KWID]) && multiple(v[WGD], v[MDIMCD] * v[VWMD]) &&
           multiple(v[WGD], v[NDIMCD] * v[VWND]) && multiple(v[WGD], v[MDIMAD] * v[VWMD]) &&
           multiple(v[WGD], v[NDIMBD] * v[VWND]) &&
           multiple(v[WGD], (v[MDIMCD] * v[NDIMCD]) / v[MDIMAD]) &&
           multiple(v[WGD], (v[MDIMCD] * v[NDIMCD]) / v[NDIMBD]) &&
           v[MDIMCD] * v[NDIMCD] <= max_work_group && local <= local_mem;
}


int cae_tune_device_query(cl_device_id device, cl_platform_id platform, cae_tune_device *d)
{
    memset(d, 0, sizeof *d);
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof d->device - 1, d->device, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_VERSION, sizeof d->device_version - 1,
                             d->device_version, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DRIVER_VERSION, sizeof d->driver - 1, d->driver, NULL));
    CL_CHECK(clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof d->platform - 1, d->platform,
                               NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_work_group,
                             &d->max_work_group, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof d->local_mem, &d->local_mem,
                             NULL));
    cae_device_key(device, platform, d->key);
    return 0;
}

int cae_tune_path(const cae_tune_device *dev, char *out, size_t size)
{
    const char *env = getenv("CAE_CL_TUNE_FILE");
    char folder[3800];
    int n;
    if (env && *env)
        n = snprintf(out, size, "%s", env);
    else if (cae_cache_folder(folder, sizeof folder) == 0)
        n = snprintf(out, size, "%s/tune/%s.json", folder, dev->key);
    else
        return -1;
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

/* Every name of a parameter set, each a non-negative integer, nothing else. */
static int read_set(json_t *obj, const char *const *names, size_t n, size_t *values,
                    const char **why)
{
    if (!json_is_object(obj)) {
        *why = "a parameter set is not an object";
        return -1;
    }
    if (json_object_size(obj) != n) {
        *why = "a parameter set has missing or unknown names";
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(obj, names[i]);
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            *why = "a parameter is missing or not a non-negative integer";
            return -1;
        }
        values[i] = (size_t)json_integer_value(v);
    }
    return 0;
}

static int same_text(json_t *root, const char *key, const char *want)
{
    const char *have = json_string_value(json_object_get(root, key));
    return have && strcmp(have, want) == 0;
}

static int parse(json_t *root, const cae_tune_device *dev, cae_tune *t, const char **why)
{
    json_t *cl, *k, *v;
    if (!json_is_object(root) || !same_text(root, "format", FORMAT)) {
        *why = "not a cae-cl-tune 1 file";
        return -1;
    }
    if (!same_text(root, "device", dev->device) || !same_text(root, "driver", dev->driver) ||
        !same_text(root, "device_version", dev->device_version) ||
        !same_text(root, "platform", dev->platform)) {
        *why = "written for another device or driver";
        return -1;
    }
    cl = json_object_get(root, "clblast");
    if (cl && !json_is_object(cl)) {
        *why = "\"clblast\" is not an object";
        return -1;
    }
    if (cl && (v = json_object_get(cl, "Xgemm"))) {
        if (read_set(v, cae_tune_xgemm_names, CAE_TUNE_XGEMM_N, t->xgemm, why) != 0)
            return -1;
        if (!cae_tune_xgemm_valid(t->xgemm, dev->max_work_group, dev->local_mem)) {
            *why = "its Xgemm set breaks CLBlast's constraints or this device's limits";
            return -1;
        }
        t->have_xgemm = 1;
    }
    if (cl && (v = json_object_get(cl, "XgemmDirect"))) {
        if (read_set(v, cae_tune_direct_names, CAE_TUNE_DIRECT_N, t->direct, why) != 0)
            return -1;
        if (!cae_tune_direct_valid(t->direct, dev->max_work_group, dev->local_mem)) {
            *why = "its XgemmDirect set breaks CLBlast's constraints or this device's limits";
            return -1;
        }
        t->have_direct = 1;
    }
    if (cl && (v = json_object_get(cl, "GemmRoutine"))) {
        static const char *const names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
        if (read_set(v, names, 1, &t->min_indirect, why) != 0)
            return -1;
        t->have_min_indirect = 1;
    }
    k = json_object_get(root, "kernels");
    if (k && !json_is_object(k)) {
        *why = "\"kernels\" is not an object";
        return -1;
    }
    if (k && (v = json_object_get(k, "work_group_1d"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 4096) {
            *why = "work_group_1d is not an integer in 1..4096";
            return -1;
        }
        t->work_group_1d = (size_t)json_integer_value(v);
        t->have_wg = 1;
    }
    if (k && (v = json_object_get(k, "defines"))) {
        const char *name;
        json_t *val;
        if (!json_is_object(v)) {
            *why = "\"defines\" is not an object";
            return -1;
        }
        json_object_foreach(v, name, val) {
            size_t i = 0;
            while (i < CAE_TUNE_DEFINES_N && strcmp(name, cae_tune_define_names[i]) != 0)
                i++;
            if (i == CAE_TUNE_DEFINES_N || !json_is_integer(val) ||
                (json_integer_value(val) != 0 && json_integer_value(val) != 1)) {
                *why = "a kernel define is unknown or not 0/1";
                return -1;
            }
            t->have_define[i] = 1;
            t->define[i] = (int)json_integer_value(val);
        }
    }
    return 0;
}

int cae_tune_load(const char *path, const cae_tune_device *dev, cae_tune *t)
{
    json_error_t jerr;
    json_t *root;
    const char *why = NULL;
    char line[300];
    struct stat st;
    FILE *f;

    memset(t, 0, sizeof *t);
    if (access(path, F_OK) != 0)
        return 0;
    /* a FIFO or device named like the tuning file must not hang the run */
    f = cae_fopen_regular(path, &st, line, sizeof line);
    root = f ? json_loadf(f, 0, &jerr) : NULL;
    if (f)
        fclose(f);
    if (!f) {
        why = line;
    } else if (!root) {
        snprintf(line, sizeof line, "not valid JSON (line %d: %s)", jerr.line, jerr.text);
        why = line;
    } else if (parse(root, dev, t, &why) != 0) {
        memset(t, 0, sizeof *t);
    }
    json_decref(root);
    if (why) {
        memset(t, 0, sizeof *t);
        cae_errorf("warning: ignoring tuning file %s: %s", path, why);
        return -1;
    }
    return 1;
}

static json_t *set_object(const char *const *names, const size_t *values, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        if (json_object_set_new(o, names[i], json_integer((json_int_t)values[i])) != 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static int put(json_t *obj, const char *key, json_t *value)
{
    return value ? json_object_set_new(obj, key, value) : -1;
}

static json_t *to_json(const cae_tune_device *dev, const cae_tune *t, json_t *extra)
{
    static const char *const routine_names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};
    json_t *root = json_object(), *cl = json_object(), *k = json_object(), *defs = json_object();
    int bad = !root || !cl || !k || !defs;
    bad = bad || put(root, "format", json_string(FORMAT)) ||
          put(root, "device", json_string(dev->device)) ||
          put(root, "device_version", json_string(dev->device_version)) ||
          put(root, "driver", json_string(dev->driver)) ||
          put(root, "platform", json_string(dev->platform));
    if (!bad && t->have_xgemm)
        bad = put(cl, "Xgemm", set_object(cae_tune_xgemm_names, t->xgemm, CAE_TUNE_XGEMM_N));
    if (!bad && t->have_direct)
        bad = put(cl, "XgemmDirect", set_object(cae_tune_direct_names, t->direct, CAE_TUNE_DIRECT_N));
    if (!bad && t->have_min_indirect)
        bad = put(cl, "GemmRoutine", set_object(routine_names, &t->min_indirect, 1));
    if (!bad && t->have_wg)
        bad = put(k, "work_group_1d", json_integer((json_int_t)t->work_group_1d));
    for (size_t i = 0; !bad && i < CAE_TUNE_DEFINES_N; i++)
        if (t->have_define[i])
            bad = put(defs, cae_tune_define_names[i], json_integer(t->define[i]));
    if (!bad) {
        bad = json_object_set(k, "defines", defs) || json_object_set(root, "clblast", cl) ||
              json_object_set(root, "kernels", k);
        if (!bad && extra)
            bad = json_object_set(root, "measured", extra);
    }
    json_decref(cl);
    json_decref(k);
    json_decref(defs);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* mkdir -p of path's folder */
static int make_parent(const char *path)
{
    char dir[4096];
    char *slash;
    if (strlen(path) >= sizeof dir)
        return -1;
    strcpy(dir, path);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    return cae_make_folder(dir);
}

int cae_tune_save(const char *path, const cae_tune_device *dev, const cae_tune *t, void *extra)
{
    char tmp[4200];
    json_t *root = to_json(dev, t, extra);
    FILE *f;
    int rc = -1;

    if (!root) {
        cae_errorf("out of host memory building tuning file %s", path);
        return -1;
    }
    if (make_parent(path) != 0) {
        cae_errorf("cannot create the folder of %s: %s", path, strerror(errno));
        json_decref(root);
        return -1;
    }
    f = cae_replace_open(path, "w", tmp, sizeof tmp);
    if (!f) {
        cae_errorf("cannot write %s: %s", tmp, strerror(errno));
        json_decref(root);
        return -1;
    }
    if (json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0 || fputc('\n', f) == EOF) {
        cae_errorf("cannot write %s: %s", tmp, strerror(errno));
        cae_replace_abort(f, tmp);
    } else if (cae_replace_commit(f, tmp, path) != 0) {
        cae_errorf("cannot write %s: %s", path, strerror(errno));
    } else {
        rc = 0;
    }
    json_decref(root);
    return rc;
}

void cae_tune_defines_options(const cae_tune *t, char *out, size_t size)
{
    for (size_t i = 0; i < CAE_TUNE_DEFINES_N; i++) {
        size_t used = strlen(out);
        if (t->have_define[i] && used < size)
            snprintf(out + used, size - used, " -D%s=%d", cae_tune_define_names[i], t->define[i]);
    }
}

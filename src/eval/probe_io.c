/* probe_io.c: the probes' files: the output folder, appended logs, and the
 * head's safetensors checkpoint as a list of named host tensors plus the
 * run's progress in the metadata (see probe.h). */
#include "eval/probe.h"

#include "runtime/errors.h"
#include "safetensors/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cae_probe_save(const char *path, const cae_probe_tensor *t, size_t n, const char *const *meta,
                   size_t n_meta, const cae_probe_state *st)
{
    cae_st_writer *w = cae_st_writer_new();
    char ep[32], best[64], best_ep[32];
    int rc = -1;
    if (!w)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (cae_st_writer_add(w, t[i].name, CAE_DT_F32, t[i].ndim, t[i].shape, t[i].data) != 0)
            goto out;
    for (size_t i = 0; i < n_meta; i++)
        if (cae_st_writer_meta(w, meta[2 * i], meta[2 * i + 1]) != 0)
            goto out;
    /* "epoch" is the last finished one, as the official checkpoints */
    snprintf(ep, sizeof ep, "%d", st->next_epoch - 1);
    snprintf(best, sizeof best, "%.17g", st->best);
    snprintf(best_ep, sizeof best_ep, "%d", st->best_epoch);
    if (cae_st_writer_meta(w, "epoch", ep) != 0 || cae_st_writer_meta(w, "max_accuracy", best) != 0 ||
        cae_st_writer_meta(w, "best_epoch", best_ep) != 0)
        goto out;
    rc = cae_st_writer_write(w, path);
out:
    cae_st_writer_free(w);
    return rc;
}

static int meta_number(const cae_st_file *f, const char *path, const char *key, double *v)
{
    const char *s = cae_st_meta(f, key);
    char *end;
    if (!s)
        return 0; /* absent: the caller's default */
    errno = 0;
    *v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0') {
        cae_errorf("%s: metadata %s '%s' is not a number", path, key, s);
        return -1;
    }
    return 0;
}

int cae_probe_load(const char *path, const cae_probe_tensor *t, size_t n, cae_probe_state *st)
{
    cae_st_file f;
    const cae_st_tensor **found = calloc(n ? n : 1, sizeof *found);
    double epoch = -1, best = -1, best_epoch = -1;
    int rc = -1;
    if (!found) {
        cae_errorf("out of host memory");
        return -1;
    }
    if (cae_st_read(&f, path) != 0) {
        free(found);
        return -1;
    }
    /* every tensor checked before any is copied: a bad file changes nothing */
    for (size_t i = 0; i < n; i++)
        if (!(found[i] = cae_st_expect(&f, t[i].name, CAE_DT_F32, t[i].ndim, t[i].shape)))
            goto out;
    if (meta_number(&f, path, "epoch", &epoch) != 0 ||
        meta_number(&f, path, "max_accuracy", &best) != 0 ||
        meta_number(&f, path, "best_epoch", &best_epoch) != 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        memcpy(t[i].data, found[i]->data, found[i]->nbytes);
    if (st) {
        st->next_epoch = (int)epoch + 1;
        st->best = best;
        st->best_epoch = (int)best_epoch;
    }
    rc = 0;
out:
    free(found);
    cae_st_free(&f);
    return rc;
}

/* tests/fuzz/fuzz_safetensors.c: cae_st_read over arbitrary bytes (written
 * to a scratch file, the reader's only entry point). A file it accepts must
 * be usable: every tensor's bytes readable, names and metadata findable.
 * The header-only read (quiet and not) must agree with it: accept exactly
 * the same files, with the same tensors. */
#include "fuzz.h"
#include "safetensors/safetensors.h"

#include <stdio.h>
#include <stdlib.h>

/* every byte is read into here, so the sanitizers see each access */
static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[4200];
    cae_st_file f;

    if (path[0] == '\0')
        snprintf(path, sizeof path, "%s/input.safetensors", cae_fuzz_tmpdir());
    cae_fuzz_write(path, data, size);
    {
        cae_st_file h;
        char why[512];
        int whole = cae_st_read(&f, path) == 0;
        size_t n = f.n_tensors;
        cae_st_free(&f);
        if ((cae_st_read_header_quiet(&h, path, why, sizeof why) == 0) != whole)
            abort();
        if (whole && h.n_tensors != n)
            abort();
        cae_st_free(&h);
    }
    if (cae_st_read(&f, path) == 0) {
        for (size_t i = 0; i < f.n_tensors; i++) {
            const cae_st_tensor *t = &f.tensors[i];
            const unsigned char *p = t->data;
            if (t->nbytes != t->numel * cae_dtype_size(t->dtype) || cae_st_find(&f, t->name) == NULL)
                abort();
            for (size_t b = 0; b < t->nbytes; b++)
                sink += p[b];
            (void)cae_st_expect(&f, t->name, t->dtype, t->ndim, t->shape);
        }
        for (size_t i = 0; i < f.n_meta; i++)
            if (cae_st_meta(&f, f.meta_keys[i]) == NULL)
                abort();
    }
    cae_st_free(&f);
    return 0;
}

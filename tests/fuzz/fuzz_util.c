/* tests/fuzz/fuzz_util.c: scratch files for the harnesses that read paths. */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[4096];

static void remove_scratch(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    char path[4096 + 256];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", scratch, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(scratch);
}

const char *cae_fuzz_tmpdir(void)
{
    if (scratch[0] == '\0') {
        const char *t = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/cae-fuzz-XXXXXX", t != NULL && t[0] ? t : "/tmp");
        if (mkdtemp(scratch) == NULL) {
            perror("cae_fuzz_tmpdir: mkdtemp");
            abort();
        }
        if (atexit(remove_scratch) != 0)
            abort();
    }
    return scratch;
}

void cae_fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");

    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

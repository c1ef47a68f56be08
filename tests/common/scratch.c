/* scratch.c: see scratch.h. */
#include "scratch.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void scratch_make(char *dir, size_t cap, const char *tag)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(dir, cap, "%s/cae-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    ck_assert(n > 0 && (size_t)n < cap);
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

void scratch_remove(const char *path)
{
    struct stat sb;
    DIR *d;
    struct dirent *e;

    if (lstat(path, &sb) != 0)
        return;
    if (!S_ISDIR(sb.st_mode)) {
        unlink(path);
        return;
    }
    chmod(path, 0700);
    d = opendir(path);
    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            char sub[8192];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub)
                scratch_remove(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

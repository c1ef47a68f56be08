/* files.c: opening regular files for reading, and replacing files whole
 * (see files.h). */
#include "runtime/files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int cae_open_regular(const char *path, struct stat *st, char *why, size_t why_size)
{
    /* O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), flags, e;

    if (fd < 0) {
        e = errno;
        snprintf(why, why_size, "cannot open: %s", strerror(e));
        errno = e;
        return -1;
    }
    if (fstat(fd, st) != 0) {
        e = errno;
        snprintf(why, why_size, "cannot stat: %s", strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, why_size, "not a regular file");
        close(fd);
        errno = 0;
        return -1;
    }
    /* regular files ignore O_NONBLOCK; clear it so nothing downstream sees EAGAIN */
    flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

FILE *cae_fopen_regular(const char *path, struct stat *st, char *why, size_t why_size)
{
    int fd = cae_open_regular(path, st, why, why_size), e;
    FILE *f;

    if (fd < 0)
        return NULL;
    f = fdopen(fd, "rb");
    if (f == NULL) {
        e = errno;
        snprintf(why, why_size, "cannot open: %s", strerror(e));
        close(fd);
        errno = e;
    }
    return f;
}

FILE *cae_replace_open(const char *path, const char *mode, char *tmp, size_t tmp_size)
{
    int n = snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= tmp_size) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return fopen(tmp, mode);
}

int cae_replace_commit(FILE *f, const char *tmp, const char *path)
{
    int e;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        e = errno;
        cae_replace_abort(f, tmp);
        errno = e;
        return -1;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

void cae_replace_abort(FILE *f, const char *tmp)
{
    int e = errno;
    fclose(f);
    unlink(tmp);
    errno = e;
}

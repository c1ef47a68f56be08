/* files.c: opening regular files for reading (see files.h). */
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

/* capture.c: see capture.h. */
#define _POSIX_C_SOURCE 200809L
#include "capture.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int saved_stderr = -1;
static char capture_path[4200];

void capture_begin(const char *dir)
{
    int fd, n;
    fflush(stderr);
    n = snprintf(capture_path, sizeof capture_path, "%s/.stderr", dir);
    ck_assert_msg(n > 0 && (size_t)n < sizeof capture_path, "capture path too long: %s", dir);
    fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_msg(fd >= 0, "cannot create %s", capture_path);
    saved_stderr = dup(2);
    ck_assert(saved_stderr >= 0);
    ck_assert(dup2(fd, 2) == 2);
    ck_assert(close(fd) == 0);
}

char *capture_end(void)
{
    FILE *f;
    char *text;
    long n;
    fflush(stderr);
    ck_assert(saved_stderr >= 0);
    ck_assert(dup2(saved_stderr, 2) == 2);
    ck_assert(close(saved_stderr) == 0);
    saved_stderr = -1;
    f = fopen(capture_path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", capture_path);
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    n = ftell(f);
    ck_assert(n >= 0);
    ck_assert(fseek(f, 0, SEEK_SET) == 0);
    text = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert(fread(text, 1, (size_t)n, f) == (size_t)n);
    text[n] = '\0';
    fclose(f);
    ck_assert(unlink(capture_path) == 0);
    return text;
}

void capture_abandon(void)
{
    if (saved_stderr < 0)
        return;
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
}

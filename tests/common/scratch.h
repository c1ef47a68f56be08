/* scratch.h: a scratch folder per test, made in setup and removed with all
 * it holds in teardown (Check runs each test between the two). */
#ifndef CAE_TEST_SCRATCH_H
#define CAE_TEST_SCRATCH_H

#include <stddef.h>

/* Make $TMPDIR (or /tmp)/cae-TAG-XXXXXX and write its path to dir;
 * asserts it fits in cap and was made. */
void scratch_make(char *dir, size_t cap, const char *tag);
/* Remove path and, for a folder, everything below it. Folders are made
 * writable first (the read-only tests leave some behind); links are removed,
 * never followed. */
void scratch_remove(const char *path);

#endif

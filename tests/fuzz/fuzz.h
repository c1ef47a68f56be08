/* tests/fuzz/fuzz.h: what the libFuzzer harnesses share. Each harness file
 * defines LLVMFuzzerTestOneInput; `make fuzz-smoke` links it with clang's
 * libFuzzer, and tests/fuzz/replay.c (a Check suite built with the normal
 * compiler) runs the same function over the committed corpus and regression
 * inputs in make check. */
#ifndef CAE_FUZZ_H
#define CAE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A private scratch folder for this process (made once, removed at exit);
 * aborts when it cannot be made: a harness has no error path. */
const char *cae_fuzz_tmpdir(void);
/* Write data to path (in the scratch folder), aborting on failure. */
void cae_fuzz_write(const char *path, const uint8_t *data, size_t size);

#endif

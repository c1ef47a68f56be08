/* tests/fuzz/fuzz_args.c: cae_args_parse over an argv made by splitting the
 * input at NUL and newline bytes (at most 64 arguments). A parse that
 * succeeds must leave a positive batch size and epoch count. */
#include "fuzz.h"
#include "train/args.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    char *argv[66];
    int argc = 0;
    cae_args a;

    if (buf == NULL)
        abort();
    if (size > 0)
        memcpy(buf, data, size);
    buf[size] = '\0';
    argv[argc++] = "cae-cl-train";
    for (size_t i = 0, start = 0; i <= size && argc < 65; i++) {
        if (i == size || buf[i] == '\0' || buf[i] == '\n') {
            buf[i] = '\0';
            if (i > start || i < size)
                argv[argc++] = buf + start;
            start = i + 1;
        }
    }
    argv[argc] = NULL;
    /* what the programs rely on after a successful parse (a negative
     * --epochs once made cae-cl-train loop for ever) */
    if (cae_args_parse(&a, argc, argv) == 0 && (a.batch_size <= 0 || a.epochs <= 0))
        abort();
    free(buf);
    return 0;
}

/* testutil.h: device fixtures shared by the Check suites (with everything
 * of hostutil.h).
 *
 * One OpenCL context per test binary (device suites run with CK_FORK=no, so
 * the context is never used across a fork). Buffers are uploaded at a
 * non-zero element offset with a canary region before and after the data, so
 * an out-of-bounds write shows up as a changed canary on download.
 */
#ifndef CAE_TESTUTIL_H
#define CAE_TESTUTIL_H

#include "hostutil.h"
#include "runtime/runtime.h"
#include <stddef.h>

#define TU_PAD 13 /* canary elements before and after every test buffer */

typedef struct {
    cl_mem mem;
    size_t n;    /* data elements (4 bytes each) */
    cae_buf buf; /* (mem, TU_PAD): what the op under test receives */
} tu_dbuf;

/* The process-wide context; the GEMM back end comes from CAE_TEST_GEMM
 * (auto, clblast or host; default auto). Aborts the test on failure. */
cae_ctx *tu_ctx(void);

tu_dbuf tu_upload(const float *host, size_t n);
tu_dbuf tu_upload_int(const int *host, size_t n);
tu_dbuf tu_filled(size_t n, float value); /* n floats, each value */
/* Copy back n floats and assert both canaries are intact. */
void tu_download(float *host, const tu_dbuf *b);
void tu_free(tu_dbuf *b);
/* Download b (canaries checked) and tu_assert_close it with want. */
void tu_expect(const char *what, const tu_dbuf *b, const double *want, double tol);
/* Download b (canaries checked) and assert every element equals value:
 * what a refused or empty call must leave as it was. */
void tu_expect_filled(const char *what, const tu_dbuf *b, float value);

#endif

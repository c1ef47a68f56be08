/* errors.h: error reporting for every OpenCL, CLBlast and libc call.
 *
 * Library functions return 0 on success and -1 on failure after printing one
 * line that names the call, the error and file:line. Only the programs exit.
 */
#ifndef CAE_ERRORS_H
#define CAE_ERRORS_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>

const char *cae_cl_error_name(cl_int err);
const char *cae_clblast_error_name(int status);
/* printf-style, prefixed with "cae-cl: " and terminated with a newline */
void cae_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cae_cl_error(const char *call, cl_int err, const char *file, int line);
/* Put "rank R: " after "cae-cl: " in every message (multi-rank runs). */
void cae_error_set_rank(int rank);

/* Evaluate an OpenCL call; on failure report it and return -1. */
#define CL_CHECK(call)                                                    \
    do {                                                                  \
        cl_int cl_check_err_ = (call);                                    \
        if (cl_check_err_ != CL_SUCCESS) {                                \
            cae_cl_error(#call, cl_check_err_, __FILE__, __LINE__);       \
            return -1;                                                    \
        }                                                                 \
    } while (0)

/* Same, but jump to a cleanup label with rc set to -1. */
#define CL_CHECK_GOTO(call, label)                                        \
    do {                                                                  \
        cl_int cl_check_err_ = (call);                                    \
        if (cl_check_err_ != CL_SUCCESS) {                                \
            cae_cl_error(#call, cl_check_err_, __FILE__, __LINE__);       \
            rc = -1;                                                      \
            goto label;                                                   \
        }                                                                 \
    } while (0)

/* Propagate a failure from a library function that already reported it. */
#define CAE_TRY(expr)                                                     \
    do {                                                                  \
        if ((expr) != 0)                                                  \
            return -1;                                                    \
    } while (0)

#define CAE_TRY_GOTO(expr, label)                                         \
    do {                                                                  \
        if ((expr) != 0) {                                                \
            rc = -1;                                                      \
            goto label;                                                   \
        }                                                                 \
    } while (0)

/* Report a failed libc call with errno's text. */
#define CAE_SYS_ERROR(what)                                               \
    cae_errorf("%s: %s (%s:%d)", (what), strerror(errno), __FILE__, __LINE__)

#endif

/* capture.h: stderr into a file between capture_begin and capture_end, for
 * the suites that check the one line a refusal prints. Assert nothing
 * between the two calls; a teardown calls capture_abandon, so a test that
 * fails anyway never leaves stderr redirected for the next one. */
#ifndef CAE_TEST_CAPTURE_H
#define CAE_TEST_CAPTURE_H

/* Redirect stderr to a file in dir (a scratch folder of the test). */
void capture_begin(const char *dir);
/* Restore stderr and return what was written to it (the caller frees). */
char *capture_end(void);
/* Restore stderr if a capture is still open (for teardowns). */
void capture_abandon(void);

#endif

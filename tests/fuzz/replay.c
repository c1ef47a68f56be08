/* tests/fuzz/replay.c: make check's replay of one libFuzzer harness (linked
 * with it, built with the normal compiler): runs LLVMFuzzerTestOneInput over
 * every file of tests/fuzz/corpus/CAE_FUZZ_NAME/ and
 * tests/fuzz/regressions/CAE_FUZZ_NAME/ (the inputs that once crashed it).
 * A harness aborts on anything wrong, so a crash fails the test; the test
 * also fails when the corpus is missing or empty. */
#include "fuzz.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CAE_FUZZ_NAME
#error "define CAE_FUZZ_NAME"
#endif

/* Run the harness over every regular file in dir; returns how many. */
static size_t replay_dir(const char *dir, int must_exist)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    if (d == NULL) {
        ck_assert_msg(!must_exist, "cannot open %s", dir);
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        FILE *f;
        unsigned char *buf;
        size_t got;

        if (e->d_name[0] == '.' || strcmp(e->d_name, "README") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ck_assert_msg(stat(path, &st) == 0, "cannot stat %s", path);
        if (!S_ISREG(st.st_mode))
            continue;
        buf = malloc((size_t)st.st_size + 1);
        ck_assert(buf != NULL);
        f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        got = fread(buf, 1, (size_t)st.st_size, f);
        fclose(f);
        ck_assert_msg(got == (size_t)st.st_size, "short read of %s", path);
        fprintf(stderr, "replay %s\n", path);
        ck_assert_int_eq(LLVMFuzzerTestOneInput(buf, got), 0);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(test_replay)
{
    const char *top = getenv("CAE_TOP_SRCDIR");
    char dir[4096];
    size_t n;

    if (top == NULL || top[0] == '\0')
        top = ".";
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", top, CAE_FUZZ_NAME);
    n = replay_dir(dir, 1);
    ck_assert_msg(n >= 3, "%s: %zu seed files, expected at least 3", dir, n);
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions/%s", top, CAE_FUZZ_NAME);
    replay_dir(dir, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz-replay-" CAE_FUZZ_NAME);
    TCase *tc = tcase_create("replay");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_replay);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* pl_test.h — small helpers shared by the C tests (tests/c/test_*.c), which had each written
 * their own: a temporary directory per test binary, paths inside it, reading a whole file,
 * writing bytes to one, and the engine-memory leak check around a run. Failures are cmocka assertions, so a missing input fails the test.
 *
 * Header-only (static inline) because every test_*.c is its own binary and the Makefile links
 * no shared test object. Include it in place of cmocka.h: it brings cmocka's prerequisites.
 * Owner: the C tests in common.
 */
#ifndef PL_TEST_H
#define PL_TEST_H

#include <errno.h>   /* program_invocation_short_name (_GNU_SOURCE) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "peftlua/alloc.h"

/* The test inputs' folder (the Makefile passes $(PEFT_SHARED), default tests/fixtures/shared). */
#ifndef PL_SHARED
#define PL_SHARED "tests/fixtures/shared"
#endif

/* The binary's temporary directory "/tmp/pl_<binary name>_XXXXXX": pass pl_test_tmpdir_setup
 * and pl_test_tmpdir_teardown to cmocka_run_group_tests. */
static char pl_test_dir[96];

static inline int pl_test_tmpdir_setup(void **state)
{
    (void)state;
    snprintf(pl_test_dir, sizeof pl_test_dir, "/tmp/pl_%.40s_XXXXXX", program_invocation_short_name);
    assert_non_null(mkdtemp(pl_test_dir));
    return 0;
}

/* rm -rf the directory and everything in it. */
static inline int pl_test_tmpdir_teardown(void **state)
{
    (void)state;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", pl_test_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* "<dir>/<name>"; the last four results stay valid. */
static inline const char *pl_test_tmp(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", pl_test_dir, name);
    return buf[k];
}

static inline int pl_test_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The whole file, malloc'ed with a NUL after the last byte; *n (may be NULL) its size. */
static inline void *pl_test_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    b[sz] = 0;
    fclose(f);
    if (n) *n = (size_t)sz;
    return b;
}

/* Create or truncate path and write n bytes. */
static inline void pl_test_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* rc of cmocka_run_group_tests, or 1 (with a note) when the counting allocator's live bytes
 * differ from before, taken just ahead of the run: some test leaked engine memory. */
static inline int pl_test_leak_check(int rc, int64_t before)
{
    const int64_t now = pl_mem_current_total();
    if (now == before) return rc;
    printf("leak: %lld bytes\n", (long long)(now - before));
    return 1;
}

#endif

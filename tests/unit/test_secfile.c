/* test_secfile.c - the "too open" rule (other bits always, group bits unless
 * the group is the process's own), the check on real files of each mode
 * (warning logged or not), and the whole-file read: newline stripping, the
 * size cap, empty and missing files. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sl/secfile.h"

static char path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "/tmp/test_secfile_%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void write_file(const char *text, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void rule(void **state)
{
    (void)state;
    const gid_t me = 1000, other = 1001;
    assert_false(secfile_too_open(0600, other, me));
    assert_false(secfile_too_open(0400, other, me));
    assert_false(secfile_too_open(0700, other, me));
    /* Group bits: fine for the process's own group (Kubernetes fsGroup)... */
    assert_false(secfile_too_open(0640, me, me));
    assert_false(secfile_too_open(0440, me, me));
    /* ...not for another group, read or write. */
    assert_true(secfile_too_open(0640, other, me));
    assert_true(secfile_too_open(0620, other, me));
    /* Other bits: always. */
    assert_true(secfile_too_open(0604, me, me));
    assert_true(secfile_too_open(0644, me, me));
    assert_true(secfile_too_open(0602, me, me));
    assert_true(secfile_too_open(0601, me, me));
}

/* Run secfile_check on path with stderr captured; returns its result. */
static int check_captured(char *err, size_t cap)
{
    char tmpl[] = "/tmp/test_secfile_err_XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = secfile_check(path, "test");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, err, cap - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmpl);
    return rc;
}

static void check_files(void **state)
{
    (void)state;
    char err[1024];
    write_file("k", 1, 0600);
    assert_int_equal(check_captured(err, sizeof err), 0);
    assert_string_equal(err, "");
    write_file("k", 1, 0644);
    assert_int_equal(check_captured(err, sizeof err), 1);
    assert_non_null(strstr(err, "event=secret_file_open"));
    assert_non_null(strstr(err, "what=test"));
    assert_non_null(strstr(err, "mode=0644"));
    assert_non_null(strstr(err, path));
    /* Group-readable by our own group: allowed. */
    assert_int_equal(chown(path, (uid_t)-1, getegid()), 0);
    write_file("k", 1, 0640);
    assert_int_equal(check_captured(err, sizeof err), 0);
    /* By another group: warned. */
    gid_t g = getegid() == 0 ? 1 : 0;
    if (chown(path, (uid_t)-1, g) == 0) { /* needs root or membership; the tests run as root */
        assert_int_equal(check_captured(err, sizeof err), 1);
        assert_non_null(strstr(err, "mode=0640"));
    }
    unlink(path);
    errno = 0;
    assert_int_equal(check_captured(err, sizeof err), -1);
    assert_int_equal(errno, ENOENT);
    assert_string_equal(err, "");
}

static void read_whole(void **state)
{
    (void)state;
    size_t n = 0;
    write_file("secret\n", 7, 0600);
    char *s = secfile_read(path, "test", 64, &n);
    assert_non_null(s);
    assert_string_equal(s, "secret");
    assert_int_equal(n, 6);
    free(s);
    write_file("secret\r\n", 8, 0600);
    s = secfile_read(path, "test", 64, &n);
    assert_string_equal(s, "secret");
    free(s);
    /* No newline, and bytes that are not text: kept as they are. */
    write_file("a\0b", 3, 0600);
    s = secfile_read(path, "test", 64, &n);
    assert_non_null(s);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "a\0b", 3);
    free(s);
    /* Exactly max bytes fit; one more does not. */
    write_file("12345678", 8, 0600);
    s = secfile_read(path, "test", 8, &n);
    assert_non_null(s);
    assert_int_equal(n, 8);
    free(s);
    errno = 0;
    assert_null(secfile_read(path, "test", 7, &n));
    assert_int_equal(errno, EFBIG);
    write_file("\n", 1, 0600);
    errno = 0;
    assert_null(secfile_read(path, "test", 64, &n));
    assert_int_equal(errno, ENODATA);
    unlink(path);
    errno = 0;
    assert_null(secfile_read(path, "test", 64, &n));
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rule),
        cmocka_unit_test_setup_teardown(check_files, setup, teardown),
        cmocka_unit_test_setup_teardown(read_whole, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

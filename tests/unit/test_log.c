/* SPDX-License-Identifier: Apache-2.0 */
/* test_log.c - log lines are one logfmt record per call (ts, level, svc, then
 * the caller's text), below-minimum levels are dropped, long lines are cut
 * but still end in a newline, and log_q quotes exactly when it must. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sl/log.h"
#include <syslog.h> /* must coexist with sl/log.h: this file would not compile otherwise */

static int saved_err = -1;
static int pipe_rd = -1;

/* Redirect stderr into a non-blocking pipe. */
static void capture_begin(void)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    saved_err = dup(2);
    dup2(p[1], 2);
    close(p[1]);
    pipe_rd = p[0];
}

/* Restore stderr and return what was written (NUL-terminated). */
static size_t capture_end(char *buf, size_t cap)
{
    dup2(saved_err, 2);
    close(saved_err);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(pipe_rd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(pipe_rd);
    buf[n] = '\0';
    return n;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
static void check_ts(const char *line)
{
    assert_memory_equal(line, "ts=", 3);
    const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == 'd')
            assert_true(isdigit((unsigned char)line[3 + i]));
        else
            assert_int_equal(line[3 + i], pat[i]);
    }
}

static void test_line_format(void **state)
{
    (void)state;
    char buf[8192];
    log_init("edge", SL_LOG_INFO);
    capture_begin();
    log_info("event=conn_close dev=%s reason=%s", "p-1", "idle");
    log_debug("event=hidden");
    log_warn("event=w n=%d", 42);
    log_error("event=e");
    capture_end(buf, sizeof buf);

    assert_int_equal(count_lines(buf), 3);
    char *l1 = buf;
    char *l2 = strchr(l1, '\n') + 1;
    char *l3 = strchr(l2, '\n') + 1;
    check_ts(l1);
    check_ts(l2);
    check_ts(l3);
    const char *rest1 = l1 + 3 + 24 + 1;
    assert_memory_equal(rest1, "level=info svc=edge event=conn_close dev=p-1 reason=idle\n",
                        strlen("level=info svc=edge event=conn_close dev=p-1 reason=idle\n"));
    assert_memory_equal(l2 + 28, "level=warn svc=edge event=w n=42\n",
                        strlen("level=warn svc=edge event=w n=42\n"));
    assert_memory_equal(l3 + 28, "level=error svc=edge event=e\n", strlen("level=error svc=edge event=e\n"));
    assert_null(strstr(buf, "hidden"));
}

static void test_levels(void **state)
{
    (void)state;
    assert_int_equal(log_level_parse("debug"), SL_LOG_DEBUG);
    assert_int_equal(log_level_parse("info"), SL_LOG_INFO);
    assert_int_equal(log_level_parse("warn"), SL_LOG_WARN);
    assert_int_equal(log_level_parse("error"), SL_LOG_ERROR);
    assert_int_equal(log_level_parse("loud"), -1);
    assert_int_equal(log_level_parse(NULL), -1);
    /* The flag form: a bad level is refused and leaves the threshold alone. */
    log_init("svc", SL_LOG_WARN);
    assert_int_equal(log_init_flag("svc", "loud"), -1);
    assert_false(log_enabled(SL_LOG_INFO));
    assert_int_equal(log_init_flag("svc", "info"), 0);
    assert_true(log_enabled(SL_LOG_INFO));
    assert_false(log_enabled(SL_LOG_DEBUG));

    char buf[4096];
    log_init("svc", SL_LOG_DEBUG);
    assert_true(log_enabled(SL_LOG_DEBUG));
    capture_begin();
    log_debug("event=d");
    capture_end(buf, sizeof buf);
    assert_non_null(strstr(buf, "level=debug svc=svc event=d\n"));

    log_init("svc", SL_LOG_ERROR);
    assert_false(log_enabled(SL_LOG_WARN));
    capture_begin();
    log_warn("event=w");
    log_info("event=i");
    capture_end(buf, sizeof buf);
    assert_int_equal(strlen(buf), 0);
    log_init("svc", SL_LOG_INFO);
}

static void test_long_line_cut(void **state)
{
    (void)state;
    static char big[10000];
    memset(big, 'x', sizeof big - 1);
    char buf[16384];
    capture_begin();
    log_info("event=big v=%s", big);
    log_info("event=after");
    /* A trailing newline from the caller must not make an empty record. */
    log_info("event=nl\n");
    capture_end(buf, sizeof buf);
    assert_int_equal(count_lines(buf), 3);
    char *nl = strchr(buf, '\n');
    assert_true(nl - buf < 4096);
    assert_memory_equal(nl - 3, "...", 3);
    assert_non_null(strstr(nl + 1, "event=after\n"));
    size_t len = strlen(buf);
    assert_true(len > 10);
    assert_string_equal(buf + len - 10, " event=nl\n");
}

static void test_quote(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(log_q(out, sizeof out, "plain", 5), "plain");
    assert_string_equal(log_q(out, sizeof out, "two words", 9), "\"two words\"");
    assert_string_equal(log_q(out, sizeof out, "a\"b", 3), "\"a\\\"b\"");
    assert_string_equal(log_q(out, sizeof out, "a\\b", 3), "\"a\\\\b\"");
    assert_string_equal(log_q(out, sizeof out, "l1\nl2", 5), "\"l1\\nl2\"");
    assert_string_equal(log_q(out, sizeof out, "k=v", 3), "\"k=v\"");
    assert_string_equal(log_q(out, sizeof out, "", 0), "\"\"");
    /* n bounds the input: bytes past n are not read. */
    assert_string_equal(log_q(out, sizeof out, "abcdef", 3), "abc");
    /* A NUL inside the value is a control byte, escaped. */
    assert_string_equal(log_q(out, sizeof out, "a\0b", 3), "\"a\\x00b\"");
    /* Truncation keeps a well-formed quoted string. */
    char small[8];
    log_q(small, sizeof small, "hello world again", 17);
    assert_string_equal(small, "\"hello\"");
    log_q(small, sizeof small, "abcdefghijkl", 12);
    assert_string_equal(small, "abcdefg");
}

static void *spam(void *arg)
{
    long id = (long)arg;
    char pad[300];
    memset(pad, 'a' + (int)id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < 200; i++)
        log_info("event=spam t=%ld i=%d pad=%s", id, i, pad);
    return NULL;
}

/* Four threads logging at once: every line is whole (one write each). */
static void test_threads(void **state)
{
    (void)state;
    static char buf[1 << 20];
    log_init("mt", SL_LOG_INFO);
    capture_begin();
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, spam, (void *)i);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    capture_end(buf, sizeof buf);
    assert_int_equal(count_lines(buf), 800);
    int per[4] = {0};
    for (char *l = buf; *l; l = strchr(l, '\n') + 1) {
        check_ts(l);
        long t;
        int i;
        assert_int_equal(sscanf(strstr(l, "event=spam"), "event=spam t=%ld i=%d", &t, &i), 2);
        assert_true(t >= 0 && t < 4);
        assert_int_equal(i, per[t]++); /* each thread's lines in order, none lost */
        char *pad = strstr(l, "pad=") + 4;
        assert_int_equal(strspn(pad, (char[]){(char)('a' + t), 0}), 299);
        assert_int_equal(pad[299], '\n');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format),   cmocka_unit_test(test_levels),
        cmocka_unit_test(test_long_line_cut), cmocka_unit_test(test_quote),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_cfg.c - option precedence (flag > env > default), SLUICE_* naming,
 * --x=v and --x v forms, booleans, and the exits: 2 with one stderr line on a
 * bad value or unknown flag, 0 with the option list on --help. Exiting cases
 * run cfg_parse in a forked child with stdout/stderr captured. A CFG_SECRET
 * option from a value, a file (flag or variable), both variables (refused),
 * a missing or empty file, and the warning for a file others may read. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sl/cfg.h"
#include "sl/version.h"

static const char *s_pull;
static const char *s_db;
static int64_t s_batch;
static bool s_verbose;
static bool s_tls;
static double s_ratio;
static int64_t s_workers;
static const char *s_password;

static const struct cfg_opt opts[] = {
    {"pull", CFG_STR, &s_pull, "tcp://*:7001", "PULL endpoint to bind", 0, 0},
    {"db", CFG_STR, &s_db, NULL, "libpq conninfo", 0, 0},
    {"batch-max", CFG_INT, &s_batch, "500", "rows per insert batch", 1, 10000},
    {"verbose", CFG_BOOL, &s_verbose, NULL, "more logs", 0, 0},
    {"tls", CFG_BOOL, &s_tls, "true", "use TLS", 0, 0},
    {"drain-rate", CFG_DOUBLE, &s_ratio, "0.5", "fraction per second", 0, 0},
    {"workers", CFG_INT, &s_workers, NULL, "worker threads (unset = one per core)", 1, 64},
    {"password", CFG_SECRET, &s_password, NULL, "MQTT password", 0, 0},
};
#define NOPTS ((int)(sizeof opts / sizeof opts[0]))

static void clear_env(void)
{
    unsetenv("SLUICE_PULL");
    unsetenv("SLUICE_DB");
    unsetenv("SLUICE_BATCH_MAX");
    unsetenv("SLUICE_VERBOSE");
    unsetenv("SLUICE_TLS");
    unsetenv("SLUICE_DRAIN_RATE");
    unsetenv("SLUICE_WORKERS");
    unsetenv("SLUICE_PASSWORD");
    unsetenv("SLUICE_PASSWORD_FILE");
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

static void parse(int argc, char **argv)
{
    assert_int_equal(cfg_parse(opts, NOPTS, argc, argv, "test program"), 0);
}

static void test_defaults(void **state)
{
    (void)state;
    char *argv[] = {"prog", NULL};
    parse(1, argv);
    assert_string_equal(s_pull, "tcp://*:7001");
    assert_string_equal(s_db, "");
    assert_int_equal(s_batch, 500);
    assert_false(s_verbose);
    assert_true(s_tls);
    assert_true(s_ratio == 0.5);
    /* A NULL default is the zero of the type, not range-checked... */
    assert_int_equal(s_workers, 0);
}

static void test_env_naming_and_precedence(void **state)
{
    (void)state;
    setenv("SLUICE_BATCH_MAX", "42", 1);
    setenv("SLUICE_PULL", "tcp://*:9", 1);
    setenv("SLUICE_DRAIN_RATE", "2.5", 1);
    setenv("SLUICE_TLS", "no", 1);
    char *argv[] = {"prog", NULL};
    parse(1, argv);
    assert_int_equal(s_batch, 42);
    assert_string_equal(s_pull, "tcp://*:9");
    assert_true(s_ratio == 2.5);
    assert_false(s_tls);

    /* A flag beats the environment, in both spellings. */
    char *argv2[] = {"prog", "--batch-max", "7", "--pull=tcp://h:1", NULL};
    parse(4, argv2);
    assert_int_equal(s_batch, 7);
    assert_string_equal(s_pull, "tcp://h:1");
    assert_true(s_ratio == 2.5); /* untouched by flags: env still applies */
}

static void test_forms(void **state)
{
    (void)state;
    /* Last occurrence wins; "--x=" sets an empty string; values may start
     * with '-' when given as a separate argument. */
    char *argv[] = {"prog", "--batch-max=3", "--batch-max", "9", "--db=", "--pull", "-x", NULL};
    parse(7, argv);
    assert_int_equal(s_batch, 9);
    assert_string_equal(s_db, "");
    assert_string_equal(s_pull, "-x");
}

static void test_bools(void **state)
{
    (void)state;
    char *a1[] = {"prog", "--verbose", NULL};
    parse(2, a1);
    assert_true(s_verbose);
    char *a2[] = {"prog", "--verbose", "--tls=false", NULL};
    parse(3, a2);
    assert_true(s_verbose);
    assert_false(s_tls);
    char *a3[] = {"prog", "--tls", "0", "--verbose=yes", NULL};
    parse(4, a3);
    assert_false(s_tls);
    assert_true(s_verbose);
    /* A bare bool followed by another flag does not swallow it. */
    char *a4[] = {"prog", "--verbose", "--batch-max", "2", NULL};
    parse(4, a4);
    assert_true(s_verbose);
    assert_int_equal(s_batch, 2);
    setenv("SLUICE_VERBOSE", "1", 1);
    char *a5[] = {"prog", NULL};
    parse(1, a5);
    assert_true(s_verbose);
}

/* A file holding text, mode `mode`; returns its path (static buffer per slot). */
static const char *secret_file(int slot, const char *text, mode_t mode)
{
    static char paths[4][64];
    snprintf(paths[slot], sizeof paths[slot], "/tmp/test_cfg_secret_%d_%d", (int)getpid(), slot);
    FILE *f = fopen(paths[slot], "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(paths[slot], mode), 0);
    return paths[slot];
}

static void test_secret_sources(void **state)
{
    (void)state;
    const char *f = secret_file(0, "s3cret-from-file\n", 0600);
    char *a1[] = {"prog", "--password", "on-the-line", NULL};
    parse(3, a1);
    assert_string_equal(s_password, "on-the-line");
    /* The file's content, its one trailing newline removed. */
    char *a2[] = {"prog", "--password-file", (char *)f, NULL};
    parse(3, a2);
    assert_string_equal(s_password, "s3cret-from-file");
    /* The last of the two forms wins, either way round. */
    char *a3[] = {"prog", "--password-file", (char *)f, "--password=later", NULL};
    parse(4, a3);
    assert_string_equal(s_password, "later");
    char f_eq[100];
    snprintf(f_eq, sizeof f_eq, "--password-file=%s", f);
    char *a4[] = {"prog", "--password", "earlier", f_eq, NULL};
    parse(4, a4);
    assert_string_equal(s_password, "s3cret-from-file");
    /* From the environment, either variable; a flag still wins. */
    setenv("SLUICE_PASSWORD_FILE", secret_file(1, "env-file\r\n", 0600), 1);
    char *a5[] = {"prog", NULL};
    parse(1, a5);
    assert_string_equal(s_password, "env-file");
    char *a6[] = {"prog", "--password", "flag", NULL};
    parse(3, a6);
    assert_string_equal(s_password, "flag");
    unsetenv("SLUICE_PASSWORD_FILE");
    setenv("SLUICE_PASSWORD", "env-value", 1);
    parse(1, a5);
    assert_string_equal(s_password, "env-value");
    /* Only the last newline goes: inner ones are part of the secret. */
    char *a7[] = {"prog", "--password-file", (char *)secret_file(2, "a\nb\n\n", 0600), NULL};
    parse(3, a7);
    assert_string_equal(s_password, "a\nb\n");
    for (int i = 0; i < 3; i++)
        unlink(secret_file(i, "", 0600));
}

struct run {
    int code;
    char out[8192];
    char err[4096];
};

static void slurp(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
}

/* Run cfg_parse in a child; return its exit code and output. 100 = returned. */
static void run_child(int argc, char **argv, struct run *r)
{
    int po[2], pe[2];
    assert_int_equal(pipe(po), 0);
    assert_int_equal(pipe(pe), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        cfg_parse(opts, NOPTS, argc, argv, "test program: does things");
        _exit(100);
    }
    close(po[1]);
    close(pe[1]);
    /* Outputs are small (< pipe buffer), so reading one then the other is safe. */
    slurp(po[0], r->out, sizeof r->out);
    slurp(pe[0], r->err, sizeof r->err);
    close(po[0]);
    close(pe[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    r->code = WEXITSTATUS(st);
}

static size_t lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void expect_exit2(int argc, char **argv, const char *needle)
{
    struct run r;
    run_child(argc, argv, &r);
    assert_int_equal(r.code, 2);
    assert_int_equal(lines(r.err), 1);
    assert_string_equal(r.out, "");
    if (needle && !strstr(r.err, needle))
        fail_msg("stderr '%s' lacks '%s'", r.err, needle);
}

static void test_errors(void **state)
{
    (void)state;
    char *a1[] = {"prog", "--batch-max", "0", NULL};
    expect_exit2(3, a1, "range");
    char *a2[] = {"prog", "--batch-max=10001", NULL};
    expect_exit2(2, a2, "range");
    char *a3[] = {"prog", "--batch-max", "12x", NULL};
    expect_exit2(3, a3, "12x");
    char *a4[] = {"prog", "--nope", "1", NULL};
    expect_exit2(3, a4, "--nope");
    char *a5[] = {"prog", "--batch-max", NULL};
    expect_exit2(2, a5, "batch-max");
    char *a6[] = {"prog", "--verbose=maybe", NULL};
    expect_exit2(2, a6, "maybe");
    char *a7[] = {"prog", "stray", NULL};
    expect_exit2(2, a7, "stray");
    char *a8[] = {"prog", "--drain-rate", "fast", NULL};
    expect_exit2(3, a8, "fast");
    /* A bad environment value is reported under the variable's name. */
    setenv("SLUICE_BATCH_MAX", "-5", 1);
    char *a9[] = {"prog", NULL};
    expect_exit2(1, a9, "SLUICE_BATCH_MAX");
    /* ...while an explicit value is. */
    unsetenv("SLUICE_BATCH_MAX");
    setenv("SLUICE_WORKERS", "0", 1);
    expect_exit2(1, a9, "SLUICE_WORKERS");
    unsetenv("SLUICE_WORKERS");
    setenv("SLUICE_BATCH_MAX", "-5", 1);
    /* A valid flag overrides a bad variable without complaint. */
    char *a10[] = {"prog", "--batch-max", "5", NULL};
    struct run r;
    run_child(3, a10, &r);
    assert_int_equal(r.code, 100);
}

static void test_secret_errors(void **state)
{
    (void)state;
    const char *f = secret_file(0, "pw\n", 0600);
    /* Both variables: ambiguous, refused. */
    setenv("SLUICE_PASSWORD", "x", 1);
    setenv("SLUICE_PASSWORD_FILE", f, 1);
    char *a1[] = {"prog", NULL};
    expect_exit2(1, a1, "SLUICE_PASSWORD_FILE");
    unsetenv("SLUICE_PASSWORD");
    unsetenv("SLUICE_PASSWORD_FILE");
    char *a2[] = {"prog", "--password-file", "/nonexistent/pw", NULL};
    expect_exit2(3, a2, "/nonexistent/pw");
    const char *empty = secret_file(1, "\n", 0600);
    char *a3[] = {"prog", "--password-file", (char *)empty, NULL};
    expect_exit2(3, a3, "empty");
    char *a4[] = {"prog", "--password-file", NULL};
    expect_exit2(2, a4, "--password-file");
    /* "-file" only exists for secrets. */
    char *a5[] = {"prog", "--db-file", (char *)f, NULL};
    expect_exit2(3, a5, "--db-file");
    /* A file others may read is used, with one warning naming it. */
    const char *open_f = secret_file(2, "pw\n", 0644);
    char *a6[] = {"prog", "--password-file", (char *)open_f, NULL};
    struct run r;
    run_child(3, a6, &r);
    assert_int_equal(r.code, 100);
    assert_int_equal(lines(r.err), 1);
    assert_non_null(strstr(r.err, "event=secret_file_open"));
    assert_non_null(strstr(r.err, open_f));
    assert_non_null(strstr(r.err, "mode=0644"));
    /* ...and a private one without. */
    char *a7[] = {"prog", "--password-file", (char *)f, NULL};
    run_child(3, a7, &r);
    assert_int_equal(r.code, 100);
    assert_string_equal(r.err, "");
    for (int i = 0; i < 3; i++)
        unlink(secret_file(i, "", 0600));
}

static void test_version(void **state)
{
    (void)state;
    struct run r;
    /* --version anywhere, even beside a bad value, prints one line and exits 0. */
    char *a1[] = {"prog", "--batch-max=0", "--version", NULL};
    run_child(3, a1, &r);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.err, "");
    char want[200];
    snprintf(want, sizeof want, "prog %s (commit %s)\n", sl_version, sl_commit);
    assert_string_equal(r.out, want);
}

static void test_help(void **state)
{
    (void)state;
    struct run r;
    /* --help anywhere, even after a bad value, prints help and exits 0. */
    char *a1[] = {"prog", "--batch-max", "5", "--nope", "--help", NULL};
    char *a2[] = {"prog", "-h", NULL};
    char *a3[] = {"prog", "--batch-max=0", "--help", NULL};
    char **cases[] = {a1, a2, a3};
    int argcs[] = {5, 2, 3};
    for (int i = 0; i < 3; i++) {
        run_child(argcs[i], cases[i], &r);
        assert_int_equal(r.code, 0);
        assert_string_equal(r.err, "");
        assert_non_null(strstr(r.out, "test program: does things"));
        assert_non_null(strstr(r.out, "--batch-max"));
        assert_non_null(strstr(r.out, "SLUICE_BATCH_MAX"));
        assert_non_null(strstr(r.out, "SLUICE_DRAIN_RATE"));
        assert_non_null(strstr(r.out, "SLUICE_PULL"));
        assert_non_null(strstr(r.out, "default \"500\""));
        assert_non_null(strstr(r.out, "default \"tcp://*:7001\""));
        assert_non_null(strstr(r.out, "rows per insert batch"));
        assert_non_null(strstr(r.out, "[1, 10000]"));
        assert_non_null(strstr(r.out, "--password-file"));
        assert_non_null(strstr(r.out, "SLUICE_PASSWORD_FILE"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_env_naming_and_precedence, setup),
        cmocka_unit_test_setup(test_forms, setup),
        cmocka_unit_test_setup(test_bools, setup),
        cmocka_unit_test_setup(test_errors, setup),
        cmocka_unit_test_setup(test_help, setup),
        cmocka_unit_test_setup(test_version, setup),
        cmocka_unit_test_setup(test_secret_sources, setup),
        cmocka_unit_test_setup(test_secret_errors, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

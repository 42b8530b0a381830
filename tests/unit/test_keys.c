/* test_keys.c - key files as sluice-keys writes them (czmq zcert): the own
 * pair from NAME_secret or from NAME beside it, with its edge binding; a
 * public certificate refused as an own key; missing and garbage files
 * refused; the warning for a secret file others may read. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sl/keys.h"

static char dir[64], name[96], secret[104];
static char pub_txt[41], sec_txt[41];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/test_keys_%d", (int)getpid());
    snprintf(name, sizeof name, "%s/edge.key", dir);
    snprintf(secret, sizeof secret, "%s_secret", name);
    if (mkdir(dir, 0700) != 0)
        return -1;
    zcert_t *c = zcert_new();
    zcert_set_meta(c, KEYS_META_EDGE_ID, "%s", "edge-7");
    if (zcert_save(c, name) != 0)
        return -1;
    snprintf(pub_txt, sizeof pub_txt, "%s", zcert_public_txt(c));
    snprintf(sec_txt, sizeof sec_txt, "%s", zcert_secret_txt(c));
    zcert_destroy(&c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run f with stderr captured into err. */
static int captured(int (*f)(void), char *err, size_t cap)
{
    char tmpl[] = "/tmp/test_keys_err_XXXXXX";
    int fd = mkstemp(tmpl);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = f();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, err, cap - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmpl);
    return rc;
}

static struct keys_pair kp;
static char bound[128];

static int load_secret(void)
{
    return keys_load_pair(secret, &kp, bound, sizeof bound);
}

static int load_public_as_pair(void)
{
    char p[120];
    snprintf(p, sizeof p, "%s/pub-only.key", dir);
    return keys_load_pair(p, &kp, NULL, 0);
}

static void own_pair(void **state)
{
    (void)state;
    char err[2048];
    memset(&kp, 0, sizeof kp);
    assert_int_equal(captured(load_secret, err, sizeof err), 0);
    assert_string_equal(kp.public_key, pub_txt);
    assert_string_equal(kp.secret_key, sec_txt);
    assert_string_equal(bound, "edge-7");
    assert_string_equal(err, ""); /* zcert wrote it 600 */
    /* NAME with NAME_secret beside it: the same pair. */
    memset(&kp, 0, sizeof kp);
    assert_int_equal(keys_load_pair(name, &kp, NULL, 0), 0);
    assert_string_equal(kp.secret_key, sec_txt);
    /* A secret file others may read: loaded, with a warning. */
    assert_int_equal(chmod(secret, 0644), 0);
    assert_int_equal(captured(load_secret, err, sizeof err), 0);
    assert_non_null(strstr(err, "event=secret_file_open"));
    assert_non_null(strstr(err, "edge.key_secret"));
    assert_int_equal(chmod(secret, 0600), 0);
}

static void refused(void **state)
{
    (void)state;
    char err[2048], p[120];
    /* A public certificate alone is no own key. */
    snprintf(p, sizeof p, "%s/pub-only.key", dir);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cp %s %s", name, p);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(captured(load_public_as_pair, err, sizeof err), -1);
    assert_non_null(strstr(err, "event=curve_key_bad"));
    assert_non_null(strstr(err, "no secret key"));
    /* ...but fine as a peer's public key. */
    char out[41];
    assert_int_equal(keys_load_public(p, out), 0);
    assert_string_equal(out, pub_txt);
    assert_int_equal(keys_load_public("/nonexistent/x.key", out), -1);
    snprintf(p, sizeof p, "%s/garbage", dir);
    FILE *f = fopen(p, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    assert_int_equal(keys_load_public(p, out), -1);
    assert_int_equal(keys_load_pair(p, &kp, NULL, 0), -1);
    assert_int_equal(keys_load_pair("", &kp, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(own_pair),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

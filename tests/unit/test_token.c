/* SPDX-License-Identifier: Apache-2.0 */
/* test_token.c - token_compute/token_check against known answers.
 *
 * Every expected value below was computed outside this code base, with the
 * openssl CLI (command in the comment), so a bug shared by token.c and the
 * test cannot hide. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sl/token.h"

#define S(x) (const uint8_t *)(x), strlen(x)

struct vec {
    const char *cmd; /* how the answer was computed */
    const uint8_t *key;
    size_t keylen;
    const char *dev;
    const char *tok;
};

static const char key100[] = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
                             "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"; /* 100 x 'k' */
static const char key64[] = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
static const char key65[] = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
static const uint8_t keybin[] = {0x00, 0xff, 0x0a};
static const char dev64[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA._:-";

static const struct vec vecs[] = {
    {"printf %s pump-0001 | openssl dgst -sha256 -hmac demo-fleet-secret   (docs/protocol.md worked example)",
     (const uint8_t *)"demo-fleet-secret", 17, "pump-0001",
     "2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc"},
    {"printf %s pump-0001 | openssl dgst -sha256 -hmac \"$(printf 'k%.0s' $(seq 1 100))\"  (key > block: "
     "hashed)",
     (const uint8_t *)key100, 100, "pump-0001",
     "b4d849123153623333f8bdcb852c488abef5f79bd95077f90e909dd0335f8c14"},
    {"printf %s pump-0001 | openssl dgst -sha256 -hmac \"$(printf 'k%.0s' $(seq 1 64))\"  (key = block size)",
     (const uint8_t *)key64, 64, "pump-0001",
     "77cd42cdc3b8377e0f2211e2725e446bb5a8dde18b8b98e8bba1ed5a38c9ba64"},
    {"printf %s pump-0001 | openssl dgst -sha256 -hmac \"$(printf 'k%.0s' $(seq 1 65))\"  (key = block + 1)",
     (const uint8_t *)key65, 65, "pump-0001",
     "be6523fdac3c913a2b11108417972a4013989cdceef7f5e1b66ea9192e4bbbc0"},
    {"printf %s AAAA...(60 x A)._:- | openssl dgst -sha256 -hmac demo-fleet-secret  (64-char dev)",
     (const uint8_t *)"demo-fleet-secret", 17, dev64,
     "b03b504dd620c9574aeb30bb59a65f7fca1c0036adc1105ebe400dade5d81de4"},
    {"printf %s x | openssl dgst -sha256 -hmac k  (1-byte key and dev)", (const uint8_t *)"k", 1, "x",
     "c38edc8815c8489f64738978f44008f8596345545f0baa68ef6fcf5c53e57189"},
    {"printf %s pump-0001 | openssl dgst -sha256 -mac HMAC -macopt hexkey:00ff0a  (binary key with NUL)",
     keybin, 3, "pump-0001", "123fd878fe97645e850e3bf5d97bcc371fe08defc1120ea135453894162fe97b"},
    /* The openssl CLI refuses an empty key; Python's hmac module is the independent source here. */
    {"python3 -c \"import hmac,hashlib;print(hmac.new(b'',b'pump-0001',hashlib.sha256).hexdigest())\"  "
     "(empty key)",
     (const uint8_t *)"", 0, "pump-0001", "b3111f6c386a3637331e7986d50014e1b4fa90e4c5e35ea012da2964eff1305c"},
};

static void test_known_answers(void **state)
{
    (void)state;
    /* the long keys really are as long as the vectors say */
    assert_int_equal(strlen(key100), 100);
    assert_int_equal(strlen(key64), 64);
    assert_int_equal(strlen(key65), 65);
    assert_int_equal(strlen(dev64), 64);
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        const struct vec *v = &vecs[i];
        char out[65];
        memset(out, '#', sizeof out);
        token_compute(v->key, v->keylen, S(v->dev), out);
        if (strcmp(out, v->tok) != 0)
            print_error("vector %zu (%s): got %s\n", i, v->cmd, out);
        assert_string_equal(out, v->tok);
        assert_int_equal(out[64], '\0');
        assert_true(token_check(v->key, v->keylen, S(v->dev), S(v->tok)));
    }
}

static void test_empty_key_null(void **state)
{
    (void)state;
    /* A NULL key of length 0 is the empty key, not "reuse the last key". */
    char a[65], b[65];
    token_compute((const uint8_t *)"other", 5, S("pump-0001"), a);
    token_compute(NULL, 0, S("pump-0001"), b);
    assert_string_equal(b, "b3111f6c386a3637331e7986d50014e1b4fa90e4c5e35ea012da2964eff1305c");
}

static const uint8_t *K = (const uint8_t *)"demo-fleet-secret";
#define KL   17
#define GOOD "2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc"

static void test_check_rejects(void **state)
{
    (void)state;
    char t[80];

    assert_true(token_check(K, KL, S("pump-0001"), S(GOOD)));

    /* wrong last char, wrong first char */
    strcpy(t, GOOD);
    t[63] = 'd';
    assert_false(token_check(K, KL, S("pump-0001"), S(t)));
    strcpy(t, GOOD);
    t[0] = '3';
    assert_false(token_check(K, KL, S("pump-0001"), S(t)));

    /* wrong length: a correct prefix, the correct token plus a byte, empty */
    assert_false(token_check(K, KL, S("pump-0001"), (const uint8_t *)GOOD, 63));
    strcpy(t, GOOD);
    strcat(t, "0");
    assert_false(token_check(K, KL, S("pump-0001"), S(t)));
    assert_false(token_check(K, KL, S("pump-0001"), (const uint8_t *)"", 0));
    assert_false(token_check(K, KL, S("pump-0001"), NULL, 0));

    /* uppercase hex is not the token: tokens are lowercase */
    strcpy(t, GOOD);
    for (char *p = t; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_false(token_check(K, KL, S("pump-0001"), S(t)));

    /* another device's token, another secret */
    assert_false(token_check(K, KL, S("pump-0002"), S(GOOD)));
    assert_false(token_check((const uint8_t *)"demo-fleet-secreT", KL, S("pump-0001"), S(GOOD)));
    /* the raw 32-byte MAC is not accepted either */
    assert_false(token_check(K, KL, S("pump-0001"), (const uint8_t *)GOOD, 32));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_empty_key_null),
        cmocka_unit_test(test_check_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

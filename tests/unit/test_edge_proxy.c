/* test_edge_proxy.c - PROXY protocol v2 headers (edge/proxy.c) byte by byte:
 * IPv4 and IPv6 with TLVs, LOCAL, every split of a header (MORE until the
 * last byte), and what is refused: a wrong signature (as soon as a byte
 * differs), version 1 text, an unknown command, a family other than TCP,
 * a header longer than PROXY_HDR_MAX. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include "proxy.h"

static const uint8_t SIG[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static size_t hdr(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, uint16_t n)
{
    memcpy(out, SIG, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
    if (n)
        memcpy(out + 16, body, n);
    return 16u + n;
}

static void v4_with_tlv_and_every_split(void **st)
{
    (void)st;
    uint8_t body[12 + 5] = {203,  0,    113,  7,    10,   0,    0,    1,   0x15,
                            0xb3, 0x1b, 0x58, 0x04, 0x00, 0x02, 0xab, 0xcd};
    uint8_t h[64];
    size_t n = hdr(h, 0x21, 0x11, body, sizeof body);
    h[n] = 0x99; /* the first byte of what follows: not part of it */
    for (size_t k = 0; k < n; k++) {
        size_t used = 0;
        struct addr a;
        bool local;
        assert_int_equal(proxy_parse(h, k, &used, &a, &local), PROXY_MORE);
    }
    size_t used = 0;
    struct addr a;
    bool local = true;
    assert_int_equal(proxy_parse(h, n + 1, &used, &a, &local), PROXY_OK);
    assert_int_equal(used, n);
    assert_false(local);
    assert_false(a.v6);
    assert_int_equal(a.port, 5555);
    uint8_t want[4] = {203, 0, 113, 7};
    assert_memory_equal(a.ip, want, 4);
}

static void v6_and_local(void **st)
{
    (void)st;
    uint8_t body[36];
    memset(body, 0, sizeof body);
    inet_pton(AF_INET6, "2001:db8::7", body);
    body[32] = 0x01;
    body[33] = 0xbb;
    uint8_t h[64];
    size_t n = hdr(h, 0x21, 0x21, body, sizeof body), used;
    struct addr a;
    bool local;
    assert_int_equal(proxy_parse(h, n, &used, &a, &local), PROXY_OK);
    assert_true(a.v6);
    assert_int_equal(a.port, 443);
    assert_int_equal(a.ip[0], 0x20);
    assert_int_equal(a.ip[15], 7);
    /* LOCAL: no address, peer untouched */
    n = hdr(h, 0x20, 0x00, NULL, 0);
    a.port = 1234;
    assert_int_equal(proxy_parse(h, n, &used, &a, &local), PROXY_OK);
    assert_true(local);
    assert_int_equal(used, 16);
    assert_int_equal(a.port, 1234);
}

static void refused(void **st)
{
    (void)st;
    size_t used;
    struct addr a;
    bool local;
    /* a device speaking frames, as soon as the first byte */
    uint8_t frame[5] = {0, 0, 0, 20, 0x84};
    assert_int_equal(proxy_parse(frame, 1, &used, &a, &local), PROXY_BAD);
    /* PROXY v1 text */
    const char *v1 = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    assert_int_equal(proxy_parse((const uint8_t *)v1, strlen(v1), &used, &a, &local), PROXY_BAD);
    uint8_t body[12] = {0};
    uint8_t h[600];
    size_t n = hdr(h, 0x31, 0x11, body, sizeof body); /* version 3 */
    assert_int_equal(proxy_parse(h, n, &used, &a, &local), PROXY_BAD);
    n = hdr(h, 0x22, 0x11, body, sizeof body); /* command 2 */
    assert_int_equal(proxy_parse(h, n, &used, &a, &local), PROXY_BAD);
    n = hdr(h, 0x21, 0x12, body, sizeof body); /* UDP over IPv4 */
    assert_int_equal(proxy_parse(h, n, &used, &a, &local), PROXY_BAD);
    n = hdr(h, 0x21, 0x11, body, 8); /* too short for TCP4 */
    assert_int_equal(proxy_parse(h, n, &used, &a, &local), PROXY_BAD);
    static uint8_t big[PROXY_HDR_MAX];
    memset(big, 0, sizeof big);
    memcpy(big, SIG, 12);
    big[12] = 0x21;
    big[13] = 0x11;
    big[14] = (uint8_t)((PROXY_HDR_MAX - 15) >> 8); /* 16 + len = PROXY_HDR_MAX + 1 */
    big[15] = (uint8_t)(PROXY_HDR_MAX - 15);
    assert_int_equal(proxy_parse(big, 16, &used, &a, &local), PROXY_BAD); /* refused before it is all there */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v4_with_tlv_and_every_split),
        cmocka_unit_test(v6_and_local),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

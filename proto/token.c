/* SPDX-License-Identifier: Apache-2.0 */
/* token.c - device tokens: lowercase hex of HMAC-SHA256(fleet secret, dev).
 *
 * The edge checks a hello's token with token_check(); sluice-token and the
 * device simulator compute one with token_compute(). The comparison is
 * constant time in the token bytes (CRYPTO_memcmp over a fixed 64 bytes,
 * whatever length was offered), so a device cannot learn a valid token a
 * byte at a time from response timing.
 *
 * Deliberately not here: validating `dev` against the id alphabet (that is
 * msg_valid_id's job, in sl_proto) and reading the secret from anywhere. */
#include "sl/token.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sl/limits.h"

void token_compute(const uint8_t *key, size_t keylen, const uint8_t *dev, size_t devlen, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    static const uint8_t empty[1] = {0};
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    /* HMAC() treats a NULL key as "reuse the previous key" in some OpenSSL
     * versions and a NULL message as an error: always pass real pointers. */
    if (key == NULL || keylen == 0) {
        key = empty;
        keylen = 0;
    }
    if (dev == NULL || devlen == 0) {
        dev = empty;
        devlen = 0;
    }
    if (HMAC(EVP_sha256(), key, (int)keylen, dev, devlen, mac, &maclen) == NULL || maclen != 32) {
        /* Only on a broken libcrypto. An all-'x' token matches no device
         * (tokens are lowercase hex), so a failure can never authenticate. */
        memset(out, 'x', SL_TOKEN_HEX);
        out[SL_TOKEN_HEX] = '\0';
        return;
    }
    for (unsigned int i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 0x0f];
    }
    out[SL_TOKEN_HEX] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
}

bool token_check(const uint8_t *key, size_t keylen, const uint8_t *dev, size_t devlen, const uint8_t *tok,
                 size_t toklen)
{
    char want[SL_TOKEN_HEX + 1];
    uint8_t got[SL_TOKEN_HEX];

    token_compute(key, keylen, dev, devlen, want);
    /* Always compare exactly 64 bytes: a short or long token is padded or
     * cut, then rejected by the length test afterwards. The copy depends on
     * the length only, never on the token's bytes. */
    memset(got, 0, sizeof got);
    if (tok != NULL)
        memcpy(got, tok, toklen < sizeof got ? toklen : sizeof got);
    int diff = CRYPTO_memcmp(got, want, SL_TOKEN_HEX);
    bool ok = (diff == 0) & (toklen == SL_TOKEN_HEX) & (want[0] != 'x');
    OPENSSL_cleanse(want, sizeof want);
    OPENSSL_cleanse(got, sizeof got);
    return ok;
}

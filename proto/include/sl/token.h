/* SPDX-License-Identifier: Apache-2.0 */
/* sl/token.h - device tokens: tok = lowercase hex(HMAC-SHA256(fleet secret, dev)).
 *
 * Lives apart from the frame and message codec (library sl_token) because it
 * needs libcrypto, which the device library does not. */
#ifndef SL_TOKEN_H
#define SL_TOKEN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes 64 hex chars and a NUL into out. */
void token_compute(const uint8_t *key, size_t keylen, const uint8_t *dev, size_t devlen, char out[65]);

/* True if tok is the token of dev. Constant time in the token bytes. */
bool token_check(const uint8_t *key, size_t keylen, const uint8_t *dev, size_t devlen, const uint8_t *tok,
                 size_t toklen);

#endif

/* edge/trust.h - what makes a hello valid: the fleet secret (the current
 * one and, during a rotation, the previous one: tokens of both are good
 * until the previous one is removed) and the deny list of revoked devices.
 * Both can be replaced while the edge runs (SIGHUP, or a watched file
 * changing: main.c); a worker checking a hello meanwhile sees either the
 * old or the new set, never a mix.
 *
 * I/O-free: main reads the files and hands their bytes over, so the parsing
 * and every rule is unit-tested on byte arrays. Thread-safe (a read-write
 * lock: hellos read, reloads write). Secret bytes are kept in this module
 * only and wiped when replaced or freed. */
#ifndef EDGE_TRUST_H
#define EDGE_TRUST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct trust;

#define TRUST_SECRET_MIN 16  /* bytes: shorter secrets are refused */
#define TRUST_SECRET_MAX 512 /* bytes per secret */

/* NULL on allocation failure. */
struct trust *trust_new(void);
void trust_destroy(struct trust **t);

/* Replace the fleet secrets with the content of a secret file: the current
 * secret on the first line, optionally the previous one on the second (one
 * line each, trailing newline and CR dropped, nothing else in the file but
 * empty lines). Refuses (nothing changes, -1 with *why) a file with no
 * secret, more than two, one shorter than TRUST_SECRET_MIN, or one of the
 * example secrets this repository has ever shipped. 0 on success; *count
 * says how many secrets are now accepted. */
int trust_set_secrets(struct trust *t, const uint8_t *file, size_t n, int *count, const char **why);

/* Replace the deny list: device ids one per line, '#' starts a comment,
 * blanks ignored. Returns the number of ids, or -1 (nothing changes) with
 * *why and *line (1-based) for an id outside [A-Za-z0-9._:-]{1,64}. */
int trust_set_denied(struct trust *t, const char *file, size_t n, const char **why, int *line);

/* Is tok (hex HMAC-SHA256 of dev) good under one of the secrets? */
bool trust_token_ok(struct trust *t, const uint8_t *dev, size_t n, const uint8_t *tok, size_t tn);

/* Is dev on the deny list? */
bool trust_denied(struct trust *t, const uint8_t *dev, size_t n);

/* The deny list's ids in order, one call per id (e.g. to close the devices
 * just revoked): cb(ud, dev, n). Holds the read lock meanwhile. */
void trust_each_denied(struct trust *t, void (*cb)(void *ud, const char *dev, size_t n), void *ud);

/* A secret this repository has shipped as an example, or too short. */
bool trust_secret_weak(const uint8_t *s, size_t n, const char **why);

#endif

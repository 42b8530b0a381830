/* sl/keys.h - CURVE key files, in czmq's zcert format (what sluice-keys
 * writes; docs/security.md "Keys").
 *
 * A key pair is two files: NAME, the public certificate (public key and
 * metadata: safe to hand out, e.g. into a service's allowed directory), and
 * NAME_secret, which holds the secret key too (mode 600). An edge's
 * certificate carries the metadata KEYS_META_EDGE_ID: the edge id, or a
 * prefix ending in '*', that the key may speak for (sl/zap.h). */
#ifndef SL_KEYS_H
#define SL_KEYS_H
#include <stdbool.h>
#include <stddef.h>

#define KEYS_META_EDGE_ID "edge-id"
#define KEYS_META_ROLE    "role" /* "edge" or "service", informative */
#define KEYS_BOUND_MAX    128    /* longest edge-id metadata accepted, with the NUL */

/* A CURVE key pair in Z85 text (40 characters and a NUL), as zcert files
 * hold them (zmqx_opts.curve takes one). */
struct keys_pair {
    char public_key[41];
    char secret_key[41];
};

/* Load this process's own key pair. path names the secret certificate
 * (NAME_secret), or NAME when NAME_secret lies beside it. Warns when other
 * users may read the secret file (sl/secfile.h). If bound is not NULL it
 * receives the edge-id metadata (cap bytes, "" if none). Returns 0, or -1
 * logged once (event=curve_key_bad path=... err=...): missing, not a
 * certificate, or no secret key in it. Blocking file I/O. */
int keys_load_pair(const char *path, struct keys_pair *kp, char *bound, size_t cap);

/* Load the public key (Z85) of a peer's certificate into out. Returns 0,
 * or -1 logged once as above. Blocking file I/O. */
int keys_load_public(const char *path, char out[41]);

/* Whether path looks like a zcert certificate (a "curve" section with a
 * 40-character public-key), read without czmq: the screen before
 * zcert_load. Blocking file I/O. */
bool keys_file_is_cert(const char *path);

#endif

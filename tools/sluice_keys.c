/* sluice_keys.c - `sluice-keys`: make the CURVE key pairs of a Sluice
 * deployment (docs/security.md "Keys"), in czmq's zcert format.
 *
 *   sluice-keys --out DIR/persister.key                   a service's pair
 *   sluice-keys --out DIR/edge-a.key --edge-id edge-a     an edge's pair, bound to its edge id
 *   sluice-keys --out DIR/edges.key --edge-id 'sluice-edge-*'   one pair for a deployment's replicas
 *   sluice-keys --show DIR/edge-a.key                     print a certificate's key and binding
 *
 * --out writes FILE (the public certificate: give it to the peers; an
 * edge's goes into each service's allowed directory) and FILE_secret (mode
 * 600: only the process it belongs to reads it), and prints the public key.
 * It refuses to overwrite either unless --force.
 *
 * Deliberately not here: distributing keys (deploy/make-secrets.sh puts
 * them where compose and Kubernetes mount them). Exit: 0 ok, 1 cannot
 * write or read, 2 usage. */
#define _GNU_SOURCE
#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sl/cfg.h"
#include "sl/keys.h"
#include "sl/log.h"

/* An edge id or a prefix ending in '*': what zcert can quote and an edge id
 * can hold (no spaces, quotes or control bytes). */
static bool valid_binding(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= KEYS_BOUND_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || (c == '*' && i != n - 1))
            return false;
    }
    return true;
}

static int show(const char *path)
{
    char pub[41];
    if (keys_load_public(path, pub) != 0)
        return 1;
    zcert_t *c = zcert_load(path);
    const char *bound = c ? zcert_meta(c, KEYS_META_EDGE_ID) : NULL;
    printf("public-key %s\n", pub);
    printf("edge-id %s\n", bound ? bound : "(none: a service key)");
    zcert_destroy(&c);
    return 0;
}

static int make(const char *out, const char *edge_id, bool force)
{
    char secret[4200];
    snprintf(secret, sizeof secret, "%s_secret", out);
    if (!force && (access(out, F_OK) == 0 || access(secret, F_OK) == 0)) {
        fprintf(stderr, "sluice-keys: %s or its _secret exists (use --force to replace the pair)\n", out);
        return 1;
    }
    zcert_t *c = zcert_new();
    if (!c) {
        fprintf(stderr, "sluice-keys: cannot make a key pair\n");
        return 1;
    }
    if (*edge_id) {
        zcert_set_meta(c, KEYS_META_EDGE_ID, "%s", edge_id);
        zcert_set_meta(c, KEYS_META_ROLE, "%s", "edge");
    } else {
        zcert_set_meta(c, KEYS_META_ROLE, "%s", "service");
    }
    /* The secret first, created private whatever the umask. */
    mode_t old = umask(077);
    int rc = zcert_save_secret(c, secret);
    umask(old);
    if (rc == 0)
        rc = zcert_save_public(c, out);
    if (rc == 0)
        rc = chmod(secret, 0600) | chmod(out, 0644);
    if (rc != 0) {
        fprintf(stderr, "sluice-keys: cannot write %s: %s\n", out, strerror(errno));
        zcert_destroy(&c);
        return 1;
    }
    printf("public-key %s\n", zcert_public_txt(c));
    printf("wrote %s (public: give it to the peers) and %s (secret, mode 600)\n", out, secret);
    zcert_destroy(&c);
    return 0;
}

int main(int argc, char **argv)
{
    const char *out = NULL, *edge_id = NULL, *shown = NULL;
    bool force = false;
    const struct cfg_opt opts[] = {
        {"out", CFG_STR, &out, "", "write a new key pair: FILE (public certificate) and FILE_secret", 0, 0},
        {"edge-id", CFG_STR, &edge_id, "",
         "with --out: an edge's pair, bound to this edge id (or a prefix ending in '*'); "
         "without: a service's pair",
         0, 0},
        {"force", CFG_BOOL, &force, "false", "with --out: replace an existing pair", 0, 0},
        {"show", CFG_STR, &shown, "", "print the public key and edge binding of a certificate FILE", 0, 0},
    };
    cfg_parse(opts, (int)(sizeof opts / sizeof opts[0]), argc, argv,
              "sluice-keys: makes the CURVE key pairs of the links between edges and services "
              "(docs/security.md).");
    log_init("keys", SL_LOG_WARN);
    if (*shown && !*out)
        return show(shown);
    if (!*out || *shown) {
        fprintf(stderr, "sluice-keys: give --out FILE [--edge-id ID], or --show FILE (try --help)\n");
        return 2;
    }
    if (*edge_id && !valid_binding(edge_id)) {
        fprintf(stderr,
                "sluice-keys: bad --edge-id '%s' (printable, no spaces or quotes, '*' only at the end)\n",
                edge_id);
        return 2;
    }
    return make(out, edge_id, force);
}

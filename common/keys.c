/* keys.c - CURVE key files through czmq's zcert (sl/keys.h).
 *
 * zcert_load(NAME) reads NAME_secret when it exists and NAME otherwise, and
 * says nothing about why a file did not load; so the file that will be read
 * is worked out here first, checked for existence and permissions, and a
 * certificate without the expected key is refused with a reason.
 *
 * Files are also screened (keys_file_is_cert) before czmq parses them:
 * czmq 4.2's zconfig_load leaks its file handle on a file it cannot parse
 * and writes to stderr, and an allowed directory is re-read every second a
 * handshake comes, README files and all.
 *
 * Deliberately not here: directories of keys (zap.c reads the allowed
 * directory), writing keys (tools/sluice_keys.c). */
#define _GNU_SOURCE
#include "sl/keys.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sl/log.h"
#include "sl/secfile.h"

static int bad(const char *path, const char *why)
{
    char q[600];
    log_error("event=curve_key_bad path=%s err=\"%s\"", log_q(q, sizeof q, path, strlen(path)), why);
    return -1;
}

bool keys_file_is_cert(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[512];
    bool in_curve = false, key = false;
    for (int n = 0; n < 200 && fgets(line, sizeof line, f); n++) {
        size_t l = strlen(line);
        if (l == sizeof line - 1 && line[l - 1] != '\n')
            break; /* longer than any line of a certificate */
        if (line[0] != ' ' && line[0] != '#')
            in_curve = strncmp(line, "curve", 5) == 0 && (line[5] == '\n' || line[5] == '\r' || !line[5]);
        const char *p = line + strspn(line, " ");
        if (in_curve && p > line && strncmp(p, "public-key = \"", 14) == 0 && strlen(p + 14) >= 41 &&
            p[14 + 40] == '"')
            key = true;
    }
    fclose(f);
    return key;
}

static bool all_zero(const byte *k)
{
    for (int i = 0; i < 32; i++)
        if (k[i])
            return false;
    return true;
}

/* The certificate at path, or NULL (logged). *secret_file gets the file the
 * secret key, if any, comes from. */
static zcert_t *load(const char *path, char *secret_file, size_t cap)
{
    if (!path || !*path) {
        bad("", "no file named");
        return NULL;
    }
    snprintf(secret_file, cap, "%s_secret", path);
    if (access(secret_file, F_OK) != 0)
        snprintf(secret_file, cap, "%s", path);
    if (access(secret_file, R_OK) != 0) {
        bad(secret_file, strerror(errno));
        return NULL;
    }
    zcert_t *c = keys_file_is_cert(secret_file) ? zcert_load(path) : NULL;
    if (!c || all_zero(zcert_public_key(c))) {
        zcert_destroy(&c);
        bad(secret_file, "not a CURVE certificate (zcert format, as sluice-keys writes)");
        return NULL;
    }
    return c;
}

int keys_load_pair(const char *path, struct keys_pair *kp, char *bound, size_t cap)
{
    char file[4096];
    zcert_t *c = load(path, file, sizeof file);
    if (!c)
        return -1;
    if (all_zero(zcert_secret_key(c))) {
        zcert_destroy(&c);
        return bad(file, "holds no secret key: give the NAME_secret file sluice-keys wrote");
    }
    secfile_check(file, "curve-key");
    snprintf(kp->public_key, sizeof kp->public_key, "%s", zcert_public_txt(c));
    snprintf(kp->secret_key, sizeof kp->secret_key, "%s", zcert_secret_txt(c));
    if (bound) {
        const char *m = zcert_meta(c, KEYS_META_EDGE_ID);
        snprintf(bound, cap, "%s", m ? m : "");
    }
    zcert_destroy(&c);
    return 0;
}

int keys_load_public(const char *path, char out[41])
{
    char file[4096];
    zcert_t *c = load(path, file, sizeof file);
    if (!c)
        return -1;
    snprintf(out, 41, "%s", zcert_public_txt(c));
    zcert_destroy(&c);
    return 0;
}

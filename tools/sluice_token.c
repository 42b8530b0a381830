/* sluice_token.c - `sluice-token DEVICE_ID`: print a device's token.
 *
 * The token is lowercase hex of HMAC-SHA256(fleet secret, DEVICE_ID)
 * (docs/protocol.md §2). The secret comes from --secret-file FILE (the file's
 * bytes minus one trailing newline, so `echo secret > f` works) or else from
 * the environment variable SLUICE_FLEET_SECRET (its exact bytes).
 *
 * Deliberately tiny: no common/ cfg (it links sl_token, sl_proto and
 * sl_base for the secret file's permission warning, sl/secfile.h), so it
 * builds wherever the protocol library does. Exit status: 0 ok, 2 usage or
 * input error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl/version.h"
#include "sl/msg.h"
#include "sl/secfile.h"
#include "sl/token.h"

#define SECRET_MAX 65536 /* a fleet secret is a few dozen bytes; refuse a wrong file */

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice-token [--secret-file FILE] DEVICE_ID\n"
               "\n"
               "Print the device token: lowercase hex HMAC-SHA256(fleet secret, DEVICE_ID).\n"
               "DEVICE_ID matches [A-Za-z0-9._:-]{1,64}.\n"
               "\n"
               "  --secret-file FILE  read the fleet secret from FILE (one trailing newline is dropped)\n"
               "  --help              show this help\n"
               "  --version           print the version and the commit built from\n"
               "\n"
               "Without --secret-file the secret is taken from the environment variable\n"
               "SLUICE_FLEET_SECRET (its exact bytes).\n");
}

static int fail(const char *msg, const char *arg)
{
    if (arg != NULL)
        fprintf(stderr, "sluice-token: %s: %s\n", msg, arg);
    else
        fprintf(stderr, "sluice-token: %s\n", msg);
    return 2;
}

/* Read all of path into buf (cap bytes). Returns the length, or -1 with
 * *err set to an errno value (EFBIG when the file exceeds cap). */
static long read_secret(const char *path, char *buf, size_t cap, int *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        *err = errno;
        return -1;
    }
    size_t n = fread(buf, 1, cap, f);
    int rerr = ferror(f) ? (errno != 0 ? errno : EIO) : 0;
    int more = n == cap && fgetc(f) != EOF;
    fclose(f);
    if (rerr != 0) {
        *err = rerr;
        return -1;
    }
    if (more) {
        *err = EFBIG;
        return -1;
    }
    return (long)n;
}

int main(int argc, char **argv)
{
    const char *secret_file = NULL;
    const char *dev = NULL;
    static char filebuf[SECRET_MAX];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--version") == 0) {
            printf("sluice-token %s (commit %s)\n", sl_version, sl_commit);
            return 0;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--secret-file") == 0) {
            if (i + 1 >= argc)
                return fail("--secret-file needs a FILE argument", NULL);
            secret_file = argv[++i];
        } else if (strncmp(a, "--secret-file=", 14) == 0) {
            secret_file = a + 14;
        } else if (strcmp(a, "--") == 0) {
            if (i + 1 < argc && dev == NULL)
                dev = argv[++i];
            if (i + 1 < argc)
                return fail("too many arguments (one DEVICE_ID expected)", NULL);
        } else if (a[0] == '-' && a[1] != '\0') {
            return fail("unknown option (try --help)", a);
        } else if (dev == NULL) {
            dev = a;
        } else {
            return fail("too many arguments (one DEVICE_ID expected)", a);
        }
    }
    if (dev == NULL)
        return fail("missing DEVICE_ID (try --help)", NULL);
    if (!msg_valid_id((const uint8_t *)dev, strlen(dev)))
        return fail("invalid DEVICE_ID (want [A-Za-z0-9._:-]{1,64})", dev);

    const char *secret;
    size_t secret_len;
    if (secret_file != NULL) {
        int err = 0;
        long n = read_secret(secret_file, filebuf, sizeof filebuf, &err);
        if (n < 0) {
            fprintf(stderr, "sluice-token: cannot read secret file %s: %s\n", secret_file,
                    err == EFBIG ? "file too large" : strerror(err));
            return 2;
        }
        secfile_check(secret_file, "secret-file"); /* warns if other users may read it */
        secret_len = (size_t)n;
        if (secret_len > 0 && filebuf[secret_len - 1] == '\n')
            secret_len--; /* exactly one: a secret may end in whitespace on purpose */
        secret = filebuf;
    } else {
        secret = getenv("SLUICE_FLEET_SECRET");
        if (secret == NULL)
            return fail("no fleet secret: set SLUICE_FLEET_SECRET or pass --secret-file FILE", NULL);
        secret_len = strlen(secret);
    }
    if (secret_len == 0)
        return fail("the fleet secret is empty", NULL);

    char tok[65];
    token_compute((const uint8_t *)secret, secret_len, (const uint8_t *)dev, strlen(dev), tok);
    if (printf("%s\n", tok) < 0 || fflush(stdout) != 0)
        return fail("cannot write to stdout", NULL);
    return 0;
}

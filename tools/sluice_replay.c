/* sluice_replay.c - `sluice-replay`: read a recording made by
 * `sluice-edge --record FILE` (docs/recording.md).
 *
 *   sluice-replay --dump FILE [--device ID]
 *   sluice-replay --edge HOST:PORT [--speed X] [--device ID] [--tls-ca CA] FILE
 *
 * Flags come through common/cfg, so each has its SLUICE_* variable. cfg
 * takes no positional arguments, so the one positional FILE is picked out
 * of argv here first (an option's value is never taken for it). Exit
 * status: 0 done, 1 the file or the edge could not be used, 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "sl/cfg.h"
#include "sl/client.h"
#include "replay.h"

static const char USAGE[] =
    "sluice-replay: show or replay a traffic recording of sluice-edge --record.\n"
    "  sluice-replay --dump FILE [--device ID]        one line per record (device frames as JSON)\n"
    "  sluice-replay --edge HOST:PORT [--speed X] [--device ID] [--tls-ca CA] FILE\n"
    "                                                 replay each recorded connection against an edge\n"
    "                                                 (over TLS with --tls-ca)\n"
    "A recording holds device tokens: the target edge needs the same fleet secret.";

static bool is_bool_word(const char *s)
{
    static const char *const words[] = {"1", "0", "true", "false", "yes", "no", "on", "off"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    const char *dump = NULL, *edge = NULL, *file = NULL, *device = NULL;
    const char *tls_ca = NULL, *tls_cert = NULL, *tls_key = NULL, *tls_name = NULL;
    double speed = 1;
    bool await_replies = true;
    int64_t linger = 0, progress = 0;
    const struct cfg_opt opts[] = {
        {"dump", CFG_STR, &dump, "", "print the records of this recording, one line each", 0, 0},
        {"edge", CFG_STR, &edge, "", "replay the recording (FILE) against the edge at HOST:PORT", 0, 0},
        {"file", CFG_STR, &file, "", "the recording to replay (or give it as the last argument)", 0, 0},
        {"device", CFG_STR, &device, "",
         "only connections whose hello names this device (comma list; * ? globs)", 0, 0},
        {"speed", CFG_DOUBLE, &speed, "1", "replay pace: 2 = twice as fast, 0 = no waiting", 0, 0},
        {"await-replies", CFG_BOOL, &await_replies, "true",
         "before each recorded read, wait (up to --linger-ms) for the frames the device had got by then", 0,
         0},
        {"linger-ms", CFG_INT, &linger, "3000", "wait this long for the edge's answers before closing", 0,
         3600000},
        {"progress-s", CFG_INT, &progress, "5", "progress line on stderr every N seconds (0 = none)", 0,
         86400},
        {"tls-ca", CFG_STR, &tls_ca, "",
         "replay over TLS: PEM CA file the edge's certificate must chain to (\"\": plain TCP)", 0, 0},
        {"tls-cert", CFG_STR, &tls_cert, "",
         "PEM client certificate for an edge with mutual TLS (one for every connection: it must name each "
         "replayed device)",
         0, 0},
        {"tls-key", CFG_STR, &tls_key, "", "PEM private key of --tls-cert", 0, 0},
        {"tls-server-name", CFG_STR, &tls_name, "",
         "name the edge's certificate must carry, DNS name or IP (\"\": the host of --edge)", 0, 0},
    };
    int nopts = (int)(sizeof opts / sizeof opts[0]);

    /* Take the positional FILE out: cfg_parse refuses positionals. */
    char **av = calloc((size_t)argc + 1, sizeof *av);
    if (!av)
        return 1;
    const char *positional = NULL;
    int ac = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i > 0 && a[0] != '-' && !positional) {
            positional = a;
            continue;
        }
        av[ac++] = argv[i];
        /* "--name value": keep the value with its option (a boolean
         * takes the next word only if it is a boolean, as cfg does). */
        if (i > 0 && strncmp(a, "--", 2) == 0 && !strchr(a, '=') && i + 1 < argc)
            for (int k = 0; k < nopts; k++)
                if (strcmp(a + 2, opts[k].name) == 0) {
                    if (opts[k].type != CFG_BOOL || is_bool_word(argv[i + 1]))
                        av[ac++] = argv[++i];
                    break;
                }
    }
    cfg_parse(opts, nopts, ac, av, USAGE);
    free(av);
    if (positional && *file) {
        fprintf(stderr, "sluice-replay: give the recording once (--file or a last argument)\n");
        return 2;
    }
    if (positional)
        file = positional;
    if (speed < 0) {
        fprintf(stderr, "sluice-replay: --speed must be >= 0\n");
        return 2;
    }
    if (!*dump == !*edge) {
        fprintf(stderr,
                "sluice-replay: give exactly one of --dump FILE or --edge HOST:PORT FILE (try --help)\n");
        return 2;
    }
    if (*dump && *file) {
        fprintf(stderr, "sluice-replay: --dump takes the recording as its value, not a second file\n");
        return 2;
    }
    if (*edge && !*file) {
        fprintf(stderr, "sluice-replay: --edge needs the recording: sluice-replay --edge HOST:PORT FILE\n");
        return 2;
    }

    if (!*tls_ca && (*tls_cert || *tls_key || *tls_name)) {
        fprintf(stderr, "sluice-replay: --tls-cert, --tls-key and --tls-server-name need --tls-ca\n");
        return 2;
    }
    struct sl_tls *tls = NULL;
    if (*tls_ca && *edge) {
        struct sl_tls_config tc = {.ca_file = tls_ca, .cert_file = tls_cert, .key_file = tls_key};
        enum sl_err terr;
        char why[256] = "";
        if ((tls = sl_tls_new(&tc, &terr, why, sizeof why)) == NULL) {
            fprintf(stderr, "sluice-replay: TLS: %s\n", why);
            return 2;
        }
    }

    struct replay_file f;
    if (replay_load(*dump ? dump : file, &f) != 0) {
        sl_tls_destroy(&tls);
        return 1;
    }
    int rc;
    if (*dump) {
        rc = replay_dump(&f, device, stdout);
    } else {
        if (f.problem)
            fprintf(stderr, "sluice-replay: warning: %s\n", f.problem);
        struct replay_opts o = {.edge = edge,
                                .tls = tls,
                                .tls_server_name = *tls_name ? tls_name : NULL,
                                .device = device,
                                .speed = speed,
                                .linger_ms = (uint32_t)linger,
                                .await_replies = await_replies,
                                .progress_s = (uint32_t)progress};
        rc = replay_net(&f, &o, stdout);
    }
    replay_unload(&f);
    sl_tls_destroy(&tls);
    return rc;
}

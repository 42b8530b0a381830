/* edge/reload.h - the files an edge reads at start and again while it runs:
 * the fleet secret file (current and previous secret), the deny list, and
 * (with TLS) the certificate, key, client CA and ticket keys. A reload
 * happens on SIGHUP and when a watched file changes: inotify on the files'
 * directories, because Kubernetes replaces a mounted secret by swapping a
 * symlink in its directory and never sends SIGHUP. Existing connections
 * stay; what a reload changes applies to new hellos and handshakes, except
 * revocation: a device that just landed on the deny list is closed at once
 * (err auth), wherever it is connected on this edge.
 *
 * A file that fails to load or is refused leaves the running value as it
 * was (one log line says why), so a half-written update never takes an
 * edge down or empties its trust. Runs on main's thread. */
#ifndef EDGE_RELOAD_H
#define EDGE_RELOAD_H
#include <stdbool.h>

struct edge;
struct reload;

struct reload_files {
    const char *secret; /* --secret-file; "" = the secret came from the environment (not reloadable) */
    const char *deny;   /* --deny-file, or "" */
    /* --listen-tls's files (e->tls loaded them already; reloaded together) */
    const char *tls_cert, *tls_key, *tls_client_ca, *tls_ticket_keys;
};

/* Load every file once into e->trust (and e's TLS context). NULL when one
 * cannot be used: the reason went to stderr (a start-up failure). */
struct reload *reload_new(struct edge *e, const struct reload_files *f);
void reload_destroy(struct reload **r);

/* The inotify fd to poll for POLLIN (-1: nothing to watch). */
int reload_fd(const struct reload *r);

/* Something changed (SIGHUP: why = "sighup"; readable inotify fd: why =
 * "inotify", events are drained first). Re-reads every file, applies what
 * differs, logs one line per file applied or refused, and closes the
 * connected devices the deny list now names. */
void reload_now(struct reload *r, const char *why);

/* Devices revoked whose close could not be posted yet (a worker's kick
 * share was full): try again. Call about once a second. */
void reload_tick(struct reload *r);

#endif

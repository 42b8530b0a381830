/* SPDX-License-Identifier: Apache-2.0 */
/* journal.h - optional append-only file journal of a device's unacked
 * messages, so a reboot loses nothing. Internal to sl_client.
 *
 * Records: 'D' u32be len + the whole data frame (header included), and
 * 'A' u64be seq. Replay applies them in order; a torn record at the end (a
 * crash mid-append) is ignored. The client truncates the journal whenever
 * every message is acked, and rewrites it from its queue when it grows. */
#ifndef SL_CLIENT_JOURNAL_H
#define SL_CLIENT_JOURNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal {
    int fd;        /* -1: no journal */
    bool sync;     /* fdatasync after each data record */
    uint64_t size; /* bytes in the file */
    char *path;    /* owned */
};

/* Called by journal_open for each record: frame != NULL for 'D' (frame, len),
 * frame == NULL for 'A' (seq). */
typedef void journal_replay_cb(void *ud, const uint8_t *frame, size_t len, uint64_t seq);

/* Open (create) path, replay it through cb. Returns 0 or -1. */
int journal_open(struct journal *j, const char *path, bool sync, journal_replay_cb *cb, void *ud);
void journal_close(struct journal *j);

int journal_data(struct journal *j, const uint8_t *frame, size_t len);
int journal_ack(struct journal *j, uint64_t seq);
/* Empty the journal (everything acked). */
int journal_reset(struct journal *j);

/* Replace the journal with the given frames (atomically: temp + rename). */
int journal_rewrite(struct journal *j, const uint8_t *const *frames, const uint32_t *lens, uint32_t n);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* sl/log.h - one-line structured logs to stderr (logfmt).
 *
 *   ts=2026-11-28T21:30:00.123Z level=info svc=edge event=conn_close dev=p-1 reason=idle
 *
 * Callers pass the key=value part; log_at adds ts, level and svc. Each line
 * is written with one write(2), so lines from threads never interleave.
 * Values with spaces must be quoted by the caller (log_q helps). */
#ifndef SL_LOG_H
#define SL_LOG_H
#include <stddef.h>

/* SL_ prefix here and lower-case macros below: <syslog.h> defines LOG_DEBUG,
 * LOG_INFO... as plain macros, and both headers may meet in one file. */
enum log_level { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR };

/* svc names the process in every line; level is the minimum printed. */
void log_init(const char *svc, enum log_level min);

/* Parse "debug", "info", "warn", "error"; -1 if none of them. */
int log_level_parse(const char *s);

/* What every program's main does with its --log-level: parse level and
 * log_init(svc, it). A bad level is reported on stderr as
 * "sluice-<svc>: bad --log-level ..." and returns -1 (exit 2, like any bad
 * flag); 0 otherwise. */
int log_init_flag(const char *svc, const char *level);

void log_at(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int log_enabled(enum log_level lvl);

/* Copy s into out (cap bytes) as a logfmt value: quoted and escaped if it
 * holds spaces, quotes or control bytes. Returns out. */
const char *log_q(char *out, size_t cap, const char *s, size_t n);

#define log_debug(...)                                                                                       \
    do {                                                                                                     \
        if (log_enabled(SL_LOG_DEBUG))                                                                       \
            log_at(SL_LOG_DEBUG, __VA_ARGS__);                                                               \
    } while (0)
#define log_info(...)  log_at(SL_LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_at(SL_LOG_WARN, __VA_ARGS__)
#define log_error(...) log_at(SL_LOG_ERROR, __VA_ARGS__)

#endif

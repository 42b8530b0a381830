/* SPDX-License-Identifier: Apache-2.0 */
/* sqltext.c - SQL literals into a caller's buffer (sqltext.h).
 *
 * Why a module of its own: it is the one place that quotes a SQL value, and
 * is tested byte by byte (test_persister_sqltext). devsum.c (the devices
 * upsert) is its one user since db.c's small batches went as binary arrays
 * (session 17); before, db.c had a copy of these lines too.
 *
 * Deliberately not here: sizing or growing buffers (the callers bound their
 * statements: db.c grows its buffer, devsum_sql_bound), identifiers (db.c
 * uses PQescapeIdentifier, which needs a connection), binary parameters. */
#include "sqltext.h"

#include <string.h>

#include "rows.h"

size_t sqltext_put(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return n;
}

size_t sqltext_lit(char *out, const void *s, size_t n)
{
    const char *c = s;
    size_t o = 0;
    out[o++] = 'E';
    out[o++] = '\'';
    for (size_t k = 0; k < n; k++) {
        if (c[k] == '\'' || c[k] == '\\')
            out[o++] = c[k];
        out[o++] = c[k];
    }
    out[o++] = '\'';
    return o;
}

size_t sqltext_ts(char *out, int64_t us)
{
    size_t o = 0;
    out[o++] = '\'';
    o += rows_fmt_us(out + o, us);
    out[o++] = '\'';
    return o;
}

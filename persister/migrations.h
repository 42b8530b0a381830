/* SPDX-License-Identifier: Apache-2.0 */
/* migrations.h - the schema migrations compiled into the persister.
 * Generated from persister/migrations/NNN_name.sql (NNN = version, applied in
 * ascending order, each once, recorded in schema_version). */
#ifndef PERSISTER_MIGRATIONS_H
#define PERSISTER_MIGRATIONS_H

struct migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct migration migrations[];
extern const int migrations_count;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* seqfile.h - the device library's default seq storage: one small text file
 * "next = N\n", replaced atomically (write temp, fsync, rename, fsync dir).
 * Internal to sl_client. */
#ifndef SL_CLIENT_SEQFILE_H
#define SL_CLIENT_SEQFILE_H
#include <stdint.h>

/* *next = the saved value, or 1 if the file does not exist. Returns 0, or -1
 * if the file exists but cannot be read or parsed (never guess a seq). */
int seqfile_load(const char *path, uint64_t *next);

/* Durably replace the file with "next = N". Returns 0 or -1. Blocks (fsync). */
int seqfile_save(const char *path, uint64_t next);

#endif

/* sl/secfile.h - files that hold a secret: CURVE secret keys, passwords,
 * database conninfo, the fleet secret.
 *
 * Every program that reads one checks who else may read it and warns once
 * per file (docs/security.md "Secret files"): a secret readable by other
 * users is as good as published on a shared host. "Other users" means the
 * file's "other" bits, and its group bits unless the group is this
 * process's own effective group: Kubernetes mounts secrets group-readable
 * by the pod's fsGroup (the image's own group), which is not a leak. */
#ifndef SL_SECFILE_H
#define SL_SECFILE_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Whether a file of this mode and group is readable or writable by anyone
 * but its owner and the group my_gid. Pure (the rule above, for tests). */
bool secfile_too_open(mode_t mode, gid_t file_gid, gid_t my_gid);

/* stat(path) and apply secfile_too_open against getegid(). Returns 0 when
 * the file is private, 1 when it is too open (then one warning was logged:
 * event=secret_file_open what=<what> path=<path> mode=<octal>), -1 when it
 * cannot be stat'ed (errno set, nothing logged: the caller's open reports
 * it). Follows symlinks (a Kubernetes secret is a symlink to the data).
 * Blocks only for the stat. */
int secfile_check(const char *path, const char *what);

/* Read a small secret file whole: checks it first (secfile_check), then
 * returns its content in a new NUL-terminated buffer with one trailing
 * "\n" or "\r\n" removed, and its length (without the NUL) in *len if len
 * is not NULL. The caller owns the buffer (free it after overwriting it).
 * NULL on failure with errno set: the open/read error, EFBIG if the file
 * holds more than max bytes, ENODATA if it is empty after the newline is
 * removed. Blocking file I/O. */
char *secfile_read(const char *path, const char *what, size_t max, size_t *len);

#endif

#pragma once
/* File helpers shared by every module that reads system files. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/* Reads a whole regular file of at most max bytes (-EFBIG) into a
 * NUL-terminated malloc'd buffer; procfs files are read to EOF. With
 * nofollow a symlink is refused (-ELOOP); a FIFO, never blocked on, is
 * -EINVAL like anything not regular. ret_st may be NULL. */
int fsutil_read_file(const char *path, size_t max, bool nofollow, char **ret_buf,
                     size_t *ret_len, struct stat *ret_st);

/* Human text for the errors fsutil_read_file returns. */
const char *fsutil_strerror(int negative_errno);

/* Prefix of the temporary files fsutil_write_atomic() creates next to its
 * destination: a leading dot and no ".conf" ending, so neither
 * systemd-sysctl nor sysctl --system ever reads one as configuration. */
#define FSUTIL_TEMP_PREFIX ".shmprov-tmp."

/* The one way shmprov writes a system file: a temporary file in the same
 * directory, every byte written, fchmod(mode), fsync, rename over path,
 * fsync of the directory. A symlink at path is refused with -ELOOP, anything
 * else but a regular file with -EEXIST, before anything is written. On any
 * failure path is unchanged and the temporary file is gone, unless only the
 * directory fsync after the rename failed (fsutil_write_atomic_renamed). */
int fsutil_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* The same, and *ret_renamed says whether the new bytes reached path: true
 * when only the final fsync of the directory failed, so the file IS
 * replaced (a transaction must then undo it like any other change). */
int fsutil_write_atomic_renamed(const char *path, const void *data, size_t len, mode_t mode, bool *ret_renamed);

/* Removes path if it is a regular file (never through a symlink) and syncs
 * its directory. -ENOENT when there is nothing to remove. */
int fsutil_remove_durable(const char *path);

/* Deletes the temporary files of path a killed run left, but those younger
 * than min_age_s seconds (a writer may be at work; 0: none). Returns how
 * many were removed, or a negative errno. */
int fsutil_remove_stale_temps(const char *path, unsigned min_age_s);

/* The same in the directory dirfd, for the temporaries of name (NULL: of
 * any file). */
int fsutil_remove_stale_temps_at(int dirfd, const char *name, unsigned min_age_s);

/* mkdir -p: dir and each missing parent, each created with mode; the
 * existing ones are left as they are. */
int fsutil_mkdir_p(const char *dir, mode_t mode);

/* fsutil_mkdir_p() of the directory part of path, mode 0755. */
int fsutil_mkdir_parents(const char *path);

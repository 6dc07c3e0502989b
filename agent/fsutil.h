#pragma once
/* File helpers shared by every module that reads system files. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/* Reads a whole regular file of at most max bytes into a NUL-terminated
 * malloc'd buffer. With nofollow a symlink at path is refused (-ELOOP).
 * Never blocks on a FIFO (opened O_NONBLOCK, then refused as -EINVAL, like
 * any file that is not regular). Files whose st_size is 0 (procfs) are read
 * to EOF, still bounded by max. Returns 0 or a negative errno:
 * -EFBIG when larger than max. ret_st may be NULL. */
int fsutil_read_file(const char *path, size_t max, bool nofollow, char **ret_buf,
                     size_t *ret_len, struct stat *ret_st);

/* Human text for the errors fsutil_read_file returns. */
const char *fsutil_strerror(int negative_errno);

#pragma once
/* stdout and stderr for a program whose every result counts: stdio's own
 * file streams give up on EINTR (a signal arriving mid-write loses the
 * result or the error message); these retry it. */

/* Replaces stdout and stderr by streams over fds 1 and 2 that retry
 * interrupted writes: stdout line-buffered on a terminal and fully
 * buffered otherwise, stderr one write per line. Keeps stdio's own streams
 * when that cannot be done. */
void streams_setup(void);

/* Flushes stdout: 0, or the negative errno of the write that failed. */
int streams_finish_stdout(void);

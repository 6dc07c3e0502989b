#include "streams.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

/* The fd travels in the cookie pointer itself: nothing to allocate. */
static ssize_t write_retrying(void *cookie, const char *buf, size_t len)
{
    int fd = (int)(long)cookie;
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return done > 0 ? (ssize_t)done : -1;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static FILE *open_retrying(int fd, int mode)
{
    static const cookie_io_functions_t io = { .write = write_retrying };
    FILE *f = fopencookie((void *)(long)fd, "w", io);

    if (f && setvbuf(f, NULL, mode, BUFSIZ) != 0) {
        (void)fclose(f);
        return NULL;
    }
    return f;
}

void streams_setup(void)
{
    FILE *out = open_retrying(STDOUT_FILENO, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF);
    FILE *err = open_retrying(STDERR_FILENO, _IOLBF);

    /* glibc's stdout and stderr are plain variables, made to be set. */
    if (out)
        stdout = out;
    if (err)
        stderr = err;
}

int streams_finish_stdout(void)
{
    bool failed = ferror(stdout) != 0;
    int err = EIO; /* an earlier write failed; its errno is gone by now */

    if (fflush(stdout) == EOF) {
        failed = true;
        err = errno;
    }
    return failed ? -err : 0;
}

#ifndef SHMPROV_CLEANUP_H
#define SHMPROV_CLEANUP_H

/* Scope-bound release, as systemd does it: a variable declared
 *     CLEANUP_FREE char *buf = NULL;
 *     CLEANUP_CLOSE int fd = -1;
 * is freed or closed on every return path, so error paths need no
 * ladder of gotos. errno is kept: cleanup must not hide why a call failed. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_free(void *p)
{
    free(*(void **)p);
}

static inline void cleanup_close(const int *fd)
{
    int saved = errno;

    if (*fd >= 0)
        (void)close(*fd);
    errno = saved;
}

static inline void cleanup_fclose(FILE **f)
{
    int saved = errno;

    if (*f)
        (void)fclose(*f);
    errno = saved;
}

#define CLEANUP_FREE __attribute__((cleanup(cleanup_free)))
#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close)))
#define CLEANUP_FCLOSE __attribute__((cleanup(cleanup_fclose)))

#endif

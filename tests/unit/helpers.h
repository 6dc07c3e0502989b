#pragma once
/* Shared by the unit tests: a profile from an inline YAML string, and the
 * parent's half of a child that creates a segment. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "profile.h"
#include "testing.h"

static inline struct profile *parse_profile_or_die(const char *yaml)
{
    struct profile_diags diags;
    struct profile *p = NULL;
    int r;

    profile_diags_init(&diags, "test.yaml");
    r = profile_parse(yaml, strlen(yaml), "test.yaml", &diags, &p);
    if (r != 0)
        cr_assert_fail("profile did not parse (%d): %s", r,
                 diags.count ? diags.items[0].message : "(no message)");
    profile_diags_free(&diags);
    return p;
}

/* The parent's half of a child that creates a segment, writes its id (or
 * -1) into the pipe fds and exits 0 only when it created one. */
static inline int child_created_id(pid_t pid, int fds[2])
{
    int id = -1, status = 0;

    close(fds[1]);
    cr_assert_eq(read(fds[0], &id, sizeof(id)), (ssize_t)sizeof(id));
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the creating child failed");
    return id;
}

/* A scratch directory from a mkdtemp() template, and its removal. */
static inline void scratch_dir_make(char *template)
{
    cr_assert_not_null(mkdtemp(template));
}

static inline void scratch_dir_remove(const char *dir)
{
    char cmd[256];

    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

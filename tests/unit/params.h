#pragma once
/* Table-driven Criterion tests: ParameterizedTestParameters() returns
 * INDEXES(table) and each ParameterizedTest(size_t *i, ...) reads
 * table[*i]: indexes, since each case runs in a fresh process. */
#include <criterion/parameterized.h>
#include <stddef.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

#define INDEXES(table)                                                                  \
    do {                                                                                \
        static size_t idx[ELEMENTSOF(table)];                                           \
        for (size_t i = 0; i < ELEMENTSOF(idx); i++)                                    \
            idx[i] = i;                                                                 \
        return cr_make_param_array(size_t, idx, ELEMENTSOF(idx));                       \
    } while (0)

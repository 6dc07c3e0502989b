#pragma once
/* Table-driven Criterion tests: ParameterizedTestParameters() returns
 * INDEXES(table), and each ParameterizedTest(size_t *i, ...) reads
 * table[*i]. Criterion runs each case in a fresh process, where pointers
 * into the parent's tables would be meaningless, so the cases are given
 * indexes into the tables instead. */
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

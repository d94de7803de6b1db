/* The fuzz targets' check: abort (a finding) with the failed condition. */
#ifndef KEYGATE_FUZZ_CHECK_H
#define KEYGATE_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            abort();                                                         \
        }                                                                    \
    } while (0)

#endif /* KEYGATE_FUZZ_CHECK_H */

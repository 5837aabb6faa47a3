/*
 * fuzz.h: what every harness of t/fuzz shares.
 */
#ifndef CS_FUZZ_H
#define CS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant; not assert(): it must hold in builds with NDEBUG too. */
#define REQUIRE(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: REQUIRE(%s) failed\n", __FILE__, \
                    __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

#endif

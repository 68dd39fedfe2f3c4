/* Self-check helpers shared by the glibc/musl test programs.
 *
 * CHECK(cond, fmt, ...) prints "FAILED: <what>" and the given details on
 * stderr and exits with status 1 when cond is false, so a failing program
 * says exactly which check broke. */
#ifndef VMRUN_IMAGES_CHECK_H
#define VMRUN_IMAGES_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fflush(stdout);                                                \
            fprintf(stderr, "FAILED: %s (%s:%d): ", #cond, __FILE__,       \
                    __LINE__);                                             \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

#define PAGE_SIZE_4K 4096UL

#endif

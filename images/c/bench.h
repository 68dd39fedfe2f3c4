/* Shared helpers of the `vmrun bench` workloads (bench_*.c).
 *
 * Every workload times itself in user mode, which runs natively both on the
 * host and inside vmrun's guest, so the same program measures both:
 *   - per-operation latency with RDTSC (fenced with LFENCE);
 *   - the measured loop is bracketed by two raw getppid() system calls, the
 *     markers `vmrun bench` uses to find the loop when it single-steps the
 *     guest kernel to count its instructions.
 * Output, parsed by vmm/src/bench.rs, one item per line (decimal integers):
 *   sample <cycles>            one per operation
 *   total <cycles> <units>     the whole loop and how many units it covered
 *   minflt <n>                 minor faults taken in the loop (getrusage),
 *                              -1 where getrusage is not available
 * stdout is fully buffered, so the samples leave in a few large writes
 * after the loop, not one write per line. */
#ifndef VMRUN_IMAGES_BENCH_H
#define VMRUN_IMAGES_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

static inline uint64_t bench_tsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

/* The marker system call around the measured loop (see above). */
static inline void bench_marker(void)
{
    syscall(SYS_getppid);
}

/* Minor faults so far (the guest counts those taken from user mode), or -1
 * where getrusage fails. */
static inline long bench_minflt(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_minflt;
}

/* A positive decimal argument, or `fallback` when absent. */
static inline unsigned long bench_arg(int argc, char **argv, int i, unsigned long fallback)
{
    if (argc <= i)
        return fallback;
    char *end;
    unsigned long v = strtoul(argv[i], &end, 10);
    CHECK(*argv[i] != '\0' && *end == '\0' && v > 0, "bad number \"%s\"", argv[i]);
    return v;
}

static inline void bench_buffer_stdout(void)
{
    static char buf[1 << 20];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
}

static inline void bench_print_samples(const uint64_t *samples, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("sample %llu\n", (unsigned long long)samples[i]);
}

static inline void bench_print_total(uint64_t cycles, uint64_t units, long minflt_before,
                                     long minflt_after)
{
    printf("total %llu %llu\n", (unsigned long long)cycles, (unsigned long long)units);
    long flt = (minflt_before < 0 || minflt_after < 0) ? -1 : minflt_after - minflt_before;
    printf("minflt %ld\n", flt);
}

#endif

/* bench_clock [CALLS]: clock_gettime(CLOCK_MONOTONIC) CALLS times (default
 * 2000), each one timed. glibc calls the vDSO's __vdso_clock_gettime (also
 * in a static program, through AT_SYSINFO_EHDR), so neither the host's
 * kernel nor vmrun's guest kernel is entered in the loop.
 * Output: see bench.h. */
#include "bench.h"

#include <time.h>

int main(int argc, char **argv)
{
    bench_buffer_stdout();
    size_t calls = bench_arg(argc, argv, 1, 2000);
    uint64_t *samples = calloc(calls, sizeof *samples);
    CHECK(samples != NULL, "calloc of %zu samples", calls);
    memset(samples, 0, calls * sizeof *samples);
    struct timespec ts, first;
    /* One call before the loop: the vDSO's and its data pages' first
     * touches are not part of what is measured. */
    CHECK(clock_gettime(CLOCK_MONOTONIC, &first) == 0, "clock_gettime");
    /* getrusage outside the markers: the window holds the loop alone. */
    long f0 = bench_minflt();
    bench_marker();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < calls; i++) {
        uint64_t t0 = bench_tsc();
        clock_gettime(CLOCK_MONOTONIC, &ts);
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    bench_marker();
    long f1 = bench_minflt();
    CHECK(ts.tv_sec > first.tv_sec || (ts.tv_sec == first.tv_sec && ts.tv_nsec >= first.tv_nsec),
          "CLOCK_MONOTONIC went back: %lld.%09ld after %lld.%09ld", (long long)ts.tv_sec,
          ts.tv_nsec, (long long)first.tv_sec, first.tv_nsec);
    bench_print_samples(samples, calls);
    bench_print_total(cycles, calls, f0, f1);
    return 0;
}

/* bench_brk [STEPS]: grow the heap with sbrk(4096) STEPS times (default
 * 2000), writing to each new page, and time each step (the brk system call
 * and the page's first-touch fault together).
 * Output: see bench.h. */
#include "bench.h"

int main(int argc, char **argv)
{
    bench_buffer_stdout();
    size_t steps = bench_arg(argc, argv, 1, 2000);
    uint64_t *samples = calloc(steps, sizeof *samples);
    CHECK(samples != NULL, "calloc of %zu samples", steps);
    memset(samples, 0, steps * sizeof *samples);
    /* brk must work before it is timed. */
    CHECK(sbrk(0) != (void *)-1, "sbrk(0)");
    bench_marker();
    long f0 = bench_minflt();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < steps; i++) {
        uint64_t t0 = bench_tsc();
        volatile unsigned char *p = sbrk(4096);
        CHECK(p != (void *)-1, "sbrk(4096) failed at step %zu", i);
        *p = 1;
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    long f1 = bench_minflt();
    bench_marker();
    bench_print_samples(samples, steps);
    bench_print_total(cycles, steps, f0, f1);
    return 0;
}

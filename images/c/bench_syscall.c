/* bench_syscall [CALLS [write]]: the null system call, syscall(SYS_getpid),
 * CALLS times (default 2000), each one timed; with `write`, a one-byte
 * write(2, ...) to stderr instead.
 * Output: see bench.h. */
#include "bench.h"

int main(int argc, char **argv)
{
    bench_buffer_stdout();
    size_t calls = bench_arg(argc, argv, 1, 2000);
    int writes = argc > 2 && strcmp(argv[2], "write") == 0;
    CHECK(argc <= 2 || writes, "unknown mode \"%s\"", argv[2]);
    uint64_t *samples = calloc(calls, sizeof *samples);
    CHECK(samples != NULL, "calloc of %zu samples", calls);
    memset(samples, 0, calls * sizeof *samples);
    bench_marker();
    long f0 = bench_minflt();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < calls; i++) {
        uint64_t t0 = bench_tsc();
        if (writes)
            syscall(SYS_write, 2, "x", 1);
        else
            syscall(SYS_getpid);
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    long f1 = bench_minflt();
    bench_marker();
    bench_print_samples(samples, calls);
    bench_print_total(cycles, calls, f0, f1);
    return 0;
}

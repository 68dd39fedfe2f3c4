/* bench_syscall [CALLS [MODE]]: one system call CALLS times (default 2000),
 * each one timed. MODE is the call:
 *   (none)     syscall(SYS_getpid), the null system call;
 *   write      a one-byte write(2, ...) to stderr;
 *   prlimit    prlimit64(0, RLIMIT_NOFILE, NULL, &old), a query;
 *   sigaction  rt_sigaction(SIGUSR1, NULL, &old), a query;
 *   rusage     getrusage(RUSAGE_SELF, &ru).
 * The last three stay inside the kernel (no work for vmrun's host) and
 * take more kernel instructions than getpid, each its own number: timed
 * with getpid they give the cost of a kernel entry and of an instruction
 * (`vmrun bench`'s getpid_10k and write_10k notes).
 * Output: see bench.h. */
#include <signal.h>

#include "bench.h"

enum mode { GETPID, WRITE, PRLIMIT, SIGACTION, RUSAGE };

static enum mode parse_mode(int argc, char **argv)
{
    static const char *const names[] = {"getpid", "write", "prlimit", "sigaction", "rusage"};
    if (argc <= 2)
        return GETPID;
    for (size_t m = 1; m < sizeof names / sizeof *names; m++)
        if (strcmp(argv[2], names[m]) == 0)
            return (enum mode)m;
    CHECK(0, "unknown mode \"%s\"", argv[2]);
    return GETPID;
}

static void call(enum mode m)
{
    struct rlimit old;
    struct rusage ru;
    /* The kernel's sigaction: handler, flags, restorer, mask. */
    unsigned long act[4];
    switch (m) {
    case GETPID:
        syscall(SYS_getpid);
        break;
    case WRITE:
        syscall(SYS_write, 2, "x", 1);
        break;
    case PRLIMIT:
        syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &old);
        break;
    case SIGACTION:
        syscall(SYS_rt_sigaction, SIGUSR1, NULL, act, 8);
        break;
    case RUSAGE:
        syscall(SYS_getrusage, RUSAGE_SELF, &ru);
        break;
    }
}

int main(int argc, char **argv)
{
    bench_buffer_stdout();
    size_t calls = bench_arg(argc, argv, 1, 2000);
    enum mode mode = parse_mode(argc, argv);
    uint64_t *samples = calloc(calls, sizeof *samples);
    CHECK(samples != NULL, "calloc of %zu samples", calls);
    memset(samples, 0, calls * sizeof *samples);
    bench_marker();
    long f0 = bench_minflt();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < calls; i++) {
        uint64_t t0 = bench_tsc();
        call(mode);
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    long f1 = bench_minflt();
    bench_marker();
    bench_print_samples(samples, calls);
    bench_print_total(cycles, calls, f0, f1);
    return 0;
}

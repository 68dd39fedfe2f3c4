/* bench_hello_dyn: hello, world through glibc's printf, dynamically linked
 * (PT_INTERP is glibc's ld.so), for `vmrun bench`'s exec_dynamic rows.
 *
 * The first thing main does is read the TSC: the guest kernel's EXEC_PHASE
 * START record (or, natively, the parent's timestamp just before execve)
 * to this one is exec plus everything ld.so and libc's start-up do before
 * the program's own code runs. main then makes the marker system call
 * (getppid, see bench.h), so that the single-stepped run can tell the
 * kernel entries before main from those after it.
 * Output: "hello, world", then "main <tsc>". */
#include "bench.h"

int main(void)
{
    uint64_t t = bench_tsc();
    bench_marker();
    printf("hello, world\n");
    printf("main %llu\n", (unsigned long long)t);
    bench_marker();
    return 0;
}

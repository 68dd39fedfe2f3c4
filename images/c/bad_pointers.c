/* bad_pointers: system calls given pointers no program may pass (the
 * kernel half, non-canonical addresses, buffers that straddle the top of
 * user space or run from a mapped page into an unmapped one, absurd
 * lengths) must fail as on Linux, never harm the kernel. Prints one line
 * per call with its result, so that a test can compare the output with a
 * native run (with address randomisation off, as under vmrun, so that the
 * page below the top of user space is the stack's in both). Raw syscall(2)
 * keeps libc (and the vDSO) out of the way. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TASK_SIZE 0x7ffffffff000UL

static const char *result(long r)
{
    static char buf[64];
    if (r >= 4096) /* a time or a tick count */
        snprintf(buf, sizeof buf, "large");
    else if (r >= 0)
        snprintf(buf, sizeof buf, "%ld", r);
    else
        snprintf(buf, sizeof buf, "-1 %s", strerrorname_np(errno));
    return buf;
}

#define TRY(name, call) printf("%-28s %-24s %s\n", name, what, result(call))

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* select's readfds covers fd 0: make it /dev/null (always readable),
     * not the harness's stdin pipe, which may or may not be closed yet. */
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) != 0)
        return 4;
    /* Two pages, the second unmapped: a buffer from the end of the first
     * runs into a hole. */
    char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (two == MAP_FAILED || munmap(two + 4096, 4096) != 0)
        return 2;
    memset(two, 'x', 4096);
    int p[2];
    if (pipe(p) != 0)
        return 3;
    struct {
        const char *what;
        uint64_t ptr;
    } bad[] = {
        {"kernel half start", 0xffff800000000000UL},
        {"direct map", 0xffff888000000000UL},
        {"kernel image", 0xffffffff81000000UL},
        {"vsyscall page", 0xffffffffff600000UL},
        {"last page", 0xfffffffffffff000UL},
        {"non-canonical low", 0x0000800000000000UL},
        {"non-canonical high", 0x8000000000000000UL},
        {"across TASK_SIZE", TASK_SIZE - 8},
        {"into a hole", (uint64_t)(two + 4096 - 8)},
        {"NULL", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *what = bad[i].what;
        uint64_t b = bad[i].ptr;
        TRY("write", syscall(SYS_write, p[1], b, 16));
        TRY("read", (write(p[1], "0123456789abcdef", 16), syscall(SYS_read, p[0], b, 16)));
        /* Drain what a failed read left. */
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        char sink[4096];
        while (read(p[0], sink, sizeof sink) > 0) {
        }
        fcntl(p[0], F_SETFL, 0);
        TRY("pwrite64 /dev/null", syscall(SYS_pwrite64, -1, b, 16, 0));
        TRY("writev iov", syscall(SYS_writev, p[1], b, 2));
        struct iovec iov[2] = {{two, 4}, {(void *)b, 16}};
        TRY("writev base", syscall(SYS_writev, p[1], iov, 2));
        while (fcntl(p[0], F_SETFL, O_NONBLOCK), read(p[0], sink, sizeof sink) > 0) {
        }
        fcntl(p[0], F_SETFL, 0);
        TRY("openat path", syscall(SYS_openat, AT_FDCWD, b, O_RDONLY));
        TRY("newfstatat path", syscall(SYS_newfstatat, AT_FDCWD, b, two, 0));
        TRY("fstat buf", syscall(SYS_fstat, 0, b));
        TRY("uname", syscall(SYS_uname, b));
        TRY("gettimeofday", syscall(SYS_gettimeofday, b, 0));
        TRY("clock_gettime", syscall(SYS_clock_gettime, 0, b));
        TRY("nanosleep req", syscall(SYS_nanosleep, b, 0));
        TRY("rt_sigaction act", syscall(SYS_rt_sigaction, 10, b, 0, 8));
        TRY("rt_sigaction old", syscall(SYS_rt_sigaction, 10, 0, b, 8));
        TRY("rt_sigprocmask set", syscall(SYS_rt_sigprocmask, SIG_BLOCK, b, 0, 8));
        TRY("rt_sigprocmask old", syscall(SYS_rt_sigprocmask, SIG_BLOCK, 0, b, 8));
        TRY("sigaltstack", syscall(SYS_sigaltstack, b, 0));
        TRY("getrandom", syscall(SYS_getrandom, b, 16, 0));
        TRY("pipe", syscall(SYS_pipe, b));
        TRY("poll", syscall(SYS_poll, b, 1, 0));
        TRY("getcwd", syscall(SYS_getcwd, b, 64));
        TRY("readlink path", syscall(SYS_readlink, b, two, 64));
        TRY("readlink buf", syscall(SYS_readlink, "/proc/self/exe", b, 64));
        TRY("futex wait", syscall(SYS_futex, b, 0 /* FUTEX_WAIT */, 1, 0, 0, 0));
        TRY("getrusage", syscall(SYS_getrusage, 0, b));
        TRY("sysinfo", syscall(SYS_sysinfo, b));
        TRY("times", syscall(SYS_times, b));
        TRY("time", syscall(SYS_time, b));
        TRY("prlimit64 old", syscall(SYS_prlimit64, 0, 7, 0, b));
        TRY("sched_getaffinity", syscall(SYS_sched_getaffinity, 0, 8, b));
        TRY("getcpu", syscall(SYS_getcpu, b, 0, 0));
        TRY("wait4 status", syscall(SYS_wait4, -1, b, 1 /* WNOHANG */, 0));
        TRY("execve path", syscall(SYS_execve, b, 0, 0));
        TRY("mincore vec", syscall(SYS_mincore, two, 4096, b));
        TRY("statx buf", syscall(SYS_statx, AT_FDCWD, "/", 0, 0xfff, b));
        TRY("statfs buf", syscall(SYS_statfs, "/", b));
        struct timeval zero = {0, 0};
        TRY("select readfds", syscall(SYS_select, 1, b, 0, 0, &zero));
        if (b != 0) /* NULL: no timeout */
            TRY("select timeout", syscall(SYS_select, 0, 0, 0, 0, b));
        TRY("getdents64", syscall(SYS_getdents64, 0, b, 64));
    }
    const char *what = "huge length";
    TRY("write", syscall(SYS_write, p[1], two, 1UL << 62));
    TRY("read", (write(p[1], "x", 1), syscall(SYS_read, p[0], two + 4000, 1UL << 62)));
    TRY("getrandom", syscall(SYS_getrandom, two, 1UL << 62, 0));
    TRY("mincore range", syscall(SYS_mincore, two, 1UL << 46, two));
    TRY("poll nfds", syscall(SYS_poll, two, 1UL << 40, 0));
    /* A vector for 16 GiB of PROT_NONE address space: 4 MiB. */
    char *big = mmap(NULL, 1UL << 34, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *vec = mmap(NULL, 1UL << 22, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED || vec == MAP_FAILED)
        return 4;
    vec[0] = 9;
    TRY("mincore 16 GiB", syscall(SYS_mincore, big, 1UL << 34, vec));
    printf("mincore 16 GiB: first byte %d, last byte %d\n", vec[0], vec[(1 << 22) - 1]);
    TRY("writev count", syscall(SYS_writev, p[1], two, 1UL << 40));
    return 0;
}

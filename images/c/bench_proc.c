/* bench_proc fork|spawn|pipe|yield|cow|futex [N]:
 * process and thread primitives, timed from the parent.
 *
 * fork:  N times: fork(), the child calls _exit(0), the parent wait4()s for
 *        it; one sample per round, measured in the parent (default N 20).
 * pipe:  one child is forked before the loop; then N times the parent
 *        writes 1 byte into one pipe, the child reads it and writes it back
 *        into the other, and the parent reads it: one sample per round trip
 *        (default N 200). The child exits when its pipe is closed.
 * spawn: N times: fork(), the child execs this program with the argument
 *        `exit` (which _exits at once), the parent wait4()s (default N 10).
 * yield: a child forked before the loop calls sched_yield until killed;
 *        N times the parent calls sched_yield, which runs the child and
 *        comes back: two context switches per sample (default N 200;
 *        both are pinned to one CPU, so natively too each yield switches).
 * cow:   the parent writes N pages, forks a child that waits on a pipe,
 *        then writes one byte in each page again: one copy-on-write fault
 *        per sample (default N 256).
 * futex: N times FUTEX_WAKE (private) of a futex word nobody waits on
 *        (default N 2000).
 * Children leave with _exit, so they never flush the parent's buffered
 * stdout (inherited across fork). Output: see bench.h. */
#define _GNU_SOURCE
#include "bench.h"

#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static const char *self_path;

static void spawn_round(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        execl(self_path, self_path, "exit", (char *)NULL);
        _exit(127);
    }
    int status;
    pid_t got = (pid_t)syscall(SYS_wait4, pid, &status, 0, NULL);
    CHECK(got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "wait4 returned %d, status %#x", (int)got, status);
}

/* Both processes on CPU 0, so that a yield switches natively too. */
static void pin_to_cpu0(void)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
}

static char *cow_pages;

static void fork_round(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0)
        _exit(0);
    int status;
    pid_t got = (pid_t)syscall(SYS_wait4, pid, &status, 0, NULL);
    CHECK(got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "wait4 returned %d, status %#x", (int)got, status);
}

/* The child of the pipe mode: echo bytes from `in` to `out` until EOF. */
static void echo_child(int in, int out)
{
    char c;
    for (;;) {
        ssize_t n = read(in, &c, 1);
        if (n == 0)
            _exit(0);
        if (n != 1 || write(out, &c, 1) != 1)
            _exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "exit") == 0)
        _exit(0);
    bench_buffer_stdout();
    CHECK(argc >= 2, "usage: bench_proc fork|spawn|pipe|yield|cow|futex [N]");
    self_path = argv[0];
    int forks = strcmp(argv[1], "fork") == 0;
    int spawns = strcmp(argv[1], "spawn") == 0;
    int pipes = strcmp(argv[1], "pipe") == 0;
    int yields = strcmp(argv[1], "yield") == 0;
    int cows = strcmp(argv[1], "cow") == 0;
    int futexes = strcmp(argv[1], "futex") == 0;
    CHECK(forks || spawns || pipes || yields || cows || futexes, "unknown mode \"%s\"", argv[1]);
    size_t n = bench_arg(argc, argv, 2,
                         forks ? 20 : spawns ? 10 : pipes || yields ? 200 : cows ? 256 : 2000);
    uint64_t *samples = calloc(n, sizeof *samples);
    CHECK(samples != NULL, "calloc of %zu samples", n);
    memset(samples, 0, n * sizeof *samples);
    /* Pipe mode: to_child and from_child, the child forked before the loop. */
    int to_child[2] = {-1, -1}, from_child[2] = {-1, -1};
    pid_t child = -1;
    static int futex_word;
    char c = 'x';
    if (pipes) {
        CHECK(pipe(to_child) == 0 && pipe(from_child) == 0, "pipe failed");
        child = fork();
        CHECK(child >= 0, "fork failed");
        if (child == 0) {
            close(to_child[1]);
            close(from_child[0]);
            echo_child(to_child[0], from_child[1]);
        }
        close(to_child[0]);
        close(from_child[1]);
        /* Warm up: one round trip before the loop. */
        CHECK(write(to_child[1], &c, 1) == 1 && read(from_child[0], &c, 1) == 1,
              "warm-up round trip");
    } else if (forks) {
        fork_round(); /* warm up */
    } else if (spawns) {
        spawn_round(); /* warm up */
    } else if (yields) {
        pin_to_cpu0();
        child = fork();
        CHECK(child >= 0, "fork failed");
        if (child == 0)
            for (;;)
                sched_yield();
        sched_yield(); /* warm up: the child runs once */
    } else if (cows) {
        cow_pages = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(cow_pages != MAP_FAILED, "mmap of %zu pages", n);
        for (size_t i = 0; i < n; i++)
            cow_pages[i * 4096] = 1;
        CHECK(pipe(to_child) == 0, "pipe failed");
        child = fork();
        CHECK(child >= 0, "fork failed");
        if (child == 0) {
            close(to_child[1]);
            read(to_child[0], &c, 1);
            _exit(0);
        }
        close(to_child[0]);
    } else {
        syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    bench_marker();
    long f0 = bench_minflt();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = bench_tsc();
        if (forks) {
            fork_round();
        } else if (spawns) {
            spawn_round();
        } else if (yields) {
            sched_yield();
        } else if (cows) {
            cow_pages[i * 4096] = 2;
        } else if (pipes) {
            c = (char)i;
            CHECK(write(to_child[1], &c, 1) == 1, "write to the child");
            CHECK(read(from_child[0], &c, 1) == 1 && c == (char)i, "read from the child");
        } else {
            long r = syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
            CHECK(r == 0, "FUTEX_WAKE returned %ld", r);
        }
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    long f1 = bench_minflt();
    bench_marker();
    if (yields) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    if (pipes || cows) {
        close(to_child[1]);
        int status;
        CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
                  WEXITSTATUS(status) == 0,
              "echo child status %#x", status);
    }
    bench_print_samples(samples, n);
    bench_print_total(cycles, n, f0, f1);
    return 0;
}

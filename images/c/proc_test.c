/* proc_test: processes, one mode per run, each compared by a test with the
 * same run natively. Output names no pid and no address, so the two runs
 * print the same bytes. Every synchronisation is through pipes and wait,
 * never sleep, and no process spins in user mode waiting for another.
 *
 *   proc_test exit N          prints "exiting with N" and exits N (the
 *                             target the other modes exec)
 *   proc_test raise           raises SIGTERM on itself
 *   proc_test exec_wait       fork+exec of `SELF exit 3`, then of
 *                             `SELF raise`; waits and prints each status
 *   proc_test kill_child      a child blocks reading a pipe; the parent
 *                             kills it with SIGTERM and prints WTERMSIG
 *   proc_test spawn           posix_spawn of `SELF exit 5`, then waitpid
 *   proc_test spawn_missing   posix_spawn of a missing program: ENOENT
 *   proc_test vfork           vfork+_exit(9), then vfork+execve(SELF exit 6)
 *   proc_test zombie          a child exits; waitid(WNOWAIT) sees it twice,
 *                             wait4 reaps it, then it is gone (ECHILD)
 *   proc_test zombie_kill     kill(pid, 0) finds a zombie, and not after
 *                             wait reaps it (ESRCH)
 *   proc_test wnohang         WNOHANG on a live child returns 0
 *   proc_test orphan          a child forks a grandchild and exits; the
 *                             grandchild prints whether getppid() is 1
 *   proc_test parallel N      N children alive at once, child i exits
 *                             with i % 256; prints the sum of statuses
 *   proc_test pipe_1m         a writer child sends 1 MiB through a pipe;
 *                             the parent counts and checksums it
 *   proc_test sigpipe         a writer whose reader exits dies of SIGPIPE;
 *                             with SIGPIPE ignored, write is EPIPE
 *   proc_test cow             parent and child write different values to
 *                             the same global, heap and stack data and each
 *                             sees its own
 *   proc_test cow_children N  N children, one after the other, each
 *                             writes the same global and heap words before
 *                             it exits; each sees the parent's values
 *   proc_test fork_loop N     N rounds of fork, _exit, wait
 *   proc_test fpu             parent and child each hold their own values
 *                             in xmm0-xmm15 and MXCSR across 20 pipe round
 *                             trips (each a task switch) and across a
 *                             signal handler that overwrites them
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

static const char *self;

static void describe_status(const char *what, int status)
{
    if (WIFEXITED(status))
        printf("%s: exited with %d\n", what, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        printf("%s: killed by signal %d (%s)\n", what, WTERMSIG(status),
               sigabbrev_np(WTERMSIG(status)));
    else
        printf("%s: status 0x%x\n", what, status);
}

static pid_t fork_checked(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    return pid;
}

static int wait_for(pid_t pid)
{
    int status;
    pid_t got = waitpid(pid, &status, 0);
    CHECK(got == pid, "waitpid returned %d: %s", (int)got, strerror(errno));
    return status;
}

static void pipe_checked(int fds[2])
{
    CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
}

/* Reads exactly one byte from fd; returns 0 at end of file. */
static int read_byte(int fd)
{
    char c;
    ssize_t n = read(fd, &c, 1);
    CHECK(n >= 0, "read: %s", strerror(errno));
    return (int)n;
}

static void write_byte(int fd)
{
    CHECK(write(fd, "x", 1) == 1, "write: %s", strerror(errno));
}

static void exec_self(const char *mode, const char *arg)
{
    char *args[] = {(char *)self, (char *)mode, (char *)arg, NULL};
    execve(self, args, environ);
    CHECK(0, "execve %s: %s", self, strerror(errno));
}

static int mode_exec_wait(void)
{
    pid_t pid = fork_checked();
    if (pid == 0)
        exec_self("exit", "3");
    describe_status("exec of `exit 3`", wait_for(pid));
    pid = fork_checked();
    if (pid == 0)
        exec_self("raise", NULL);
    describe_status("exec of `raise`", wait_for(pid));
    return 0;
}

static int mode_kill_child(void)
{
    int ready[2], never[2];
    pipe_checked(ready);
    pipe_checked(never);
    pid_t pid = fork_checked();
    if (pid == 0) {
        close(ready[0]);
        close(never[1]);
        write_byte(ready[1]);
        read_byte(never[0]); /* blocks: nobody writes */
        printf("child: read returned\n");
        _exit(0);
    }
    close(ready[1]);
    close(never[0]);
    CHECK(read_byte(ready[0]) == 1, "the child did not say it was ready");
    CHECK(kill(pid, SIGTERM) == 0, "kill: %s", strerror(errno));
    describe_status("blocked child sent SIGTERM", wait_for(pid));
    return 0;
}

static int mode_spawn(void)
{
    pid_t pid;
    char *args[] = {(char *)self, "exit", "5", NULL};
    int err = posix_spawn(&pid, self, NULL, NULL, args, environ);
    CHECK(err == 0, "posix_spawn: %s", strerror(err));
    describe_status("posix_spawn of `exit 5`", wait_for(pid));
    return 0;
}

/* A target that cannot be run: posix_spawn returns the exec's errno, which
 * glibc's child (clone with CLONE_VM|CLONE_VFORK) stores in the parent's
 * memory before it exits. */
static int mode_spawn_missing(void)
{
    pid_t pid;
    char *bad[] = {"/nonexistent/program", NULL};
    int err = posix_spawn(&pid, bad[0], NULL, NULL, bad, environ);
    printf("posix_spawn of a missing program: %s\n",
           err == ENOENT ? "ENOENT" : strerror(err));
    if (err == 0)
        describe_status("missing program", wait_for(pid));
    return 0;
}

static int mode_vfork(void)
{
    pid_t pid = vfork();
    CHECK(pid >= 0, "vfork: %s", strerror(errno));
    if (pid == 0)
        _exit(9);
    describe_status("vfork+_exit(9)", wait_for(pid));
    pid = vfork();
    CHECK(pid >= 0, "vfork: %s", strerror(errno));
    if (pid == 0) {
        char *args[] = {(char *)self, "exit", "6", NULL};
        execve(self, args, environ);
        _exit(127);
    }
    describe_status("vfork+execve of `exit 6`", wait_for(pid));
    return 0;
}

static int mode_zombie(void)
{
    int done[2];
    pipe_checked(done);
    pid_t pid = fork_checked();
    if (pid == 0) {
        close(done[0]);
        _exit(4);
    }
    close(done[1]);
    /* The child's end closes when it exits. */
    CHECK(read_byte(done[0]) == 0, "expected end of file");
    for (int round = 1; round <= 2; round++) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        int r = waitid(P_PID, pid, &info, WEXITED | WNOWAIT);
        CHECK(r == 0, "waitid: %s", strerror(errno));
        printf("waitid WNOWAIT %d: pid %s, si_signo %s, si_code %s, "
               "si_status %d\n",
               round, info.si_pid == pid ? "matches" : "differs",
               info.si_signo == SIGCHLD ? "SIGCHLD" : "other",
               info.si_code == CLD_EXITED ? "CLD_EXITED" : "other",
               info.si_status);
    }
    int status;
    pid_t got = wait4(pid, &status, 0, NULL);
    printf("wait4: pid %s\n", got == pid ? "matches" : "differs");
    describe_status("zombie", status);
    errno = 0;
    got = wait4(pid, &status, 0, NULL);
    printf("wait4 again: %d (%s)\n", (int)got,
           errno == ECHILD ? "ECHILD" : strerror(errno));
    return 0;
}

/* A zombie is still a process: kill(pid, 0) finds it until it is reaped. */
static int mode_zombie_kill(void)
{
    pid_t pid = fork_checked();
    if (pid == 0)
        _exit(4);
    siginfo_t info;
    CHECK(waitid(P_PID, pid, &info, WEXITED | WNOWAIT) == 0, "waitid: %s",
          strerror(errno));
    errno = 0;
    int r = kill(pid, 0);
    printf("zombie: kill(pid, 0) = %d (%s)\n", r,
           r == 0 ? "found" : errno == ESRCH ? "ESRCH" : strerror(errno));
    describe_status("zombie", wait_for(pid));
    errno = 0;
    r = kill(pid, 0);
    printf("after reaping: kill(pid, 0) = %d (%s)\n", r,
           r == 0 ? "found" : errno == ESRCH ? "ESRCH" : strerror(errno));
    return 0;
}

static int mode_wnohang(void)
{
    int go[2];
    pipe_checked(go);
    pid_t pid = fork_checked();
    if (pid == 0) {
        close(go[1]);
        read_byte(go[0]);
        _exit(2);
    }
    close(go[0]);
    int status;
    printf("WNOHANG on a live child: %d\n", (int)waitpid(pid, &status, WNOHANG));
    close(go[1]);
    describe_status("after closing its pipe", wait_for(pid));
    errno = 0;
    pid_t r = waitpid(-1, &status, WNOHANG);
    printf("WNOHANG with no children: %d (%s)\n", (int)r,
           errno == ECHILD ? "ECHILD" : strerror(errno));
    return 0;
}

static int mode_orphan(void)
{
    int go[2], out[2];
    pipe_checked(go);
    pipe_checked(out);
    pid_t child = fork_checked();
    if (child == 0) {
        pid_t middle = getpid();
        pid_t grandchild = fork_checked();
        if (grandchild == 0) {
            close(go[1]);
            close(out[0]);
            /* Until the parent has reaped our parent. */
            CHECK(read_byte(go[0]) == 1, "no go from the parent");
            pid_t after = getppid();
            printf("grandchild: ppid changed: %s; ppid is 1: %s\n",
                   after != middle ? "yes" : "no", after == 1 ? "yes" : "no");
            fflush(stdout);
            _exit(0); /* closes out[1]: the parent's end of file */
        }
        _exit(0);
    }
    close(go[0]);
    close(out[1]);
    describe_status("middle child", wait_for(child));
    write_byte(go[1]);
    CHECK(read_byte(out[0]) == 0, "expected end of file");
    printf("parent: the grandchild has exited\n");
    return 0;
}

static int mode_parallel(int n)
{
    int go[2];
    pipe_checked(go);
    pid_t *pids = calloc(n, sizeof *pids);
    CHECK(pids != NULL, "calloc");
    for (int i = 0; i < n; i++) {
        pids[i] = fork_checked();
        if (pids[i] == 0) {
            close(go[1]);
            /* All n are alive until the parent closes its end. */
            CHECK(read_byte(go[0]) == 0, "expected end of file");
            _exit(i % 256);
        }
    }
    close(go[0]);
    close(go[1]);
    long sum = 0;
    int reaped = 0, right = 0;
    for (int k = 0; k < n; k++) {
        int status;
        pid_t got = wait(&status);
        CHECK(got > 0, "wait: %s", strerror(errno));
        CHECK(WIFEXITED(status), "status 0x%x", status);
        reaped++;
        sum += WEXITSTATUS(status);
        for (int i = 0; i < n; i++)
            if (pids[i] == got && WEXITSTATUS(status) == i % 256)
                right++;
    }
    long want = 0;
    for (int i = 0; i < n; i++)
        want += i % 256;
    printf("%d children reaped, %d with their own status, sum %ld "
           "(expected %ld)\n",
           reaped, right, sum, want);
    return sum == want && right == n ? 0 : 1;
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

#define MIB (1024 * 1024)

static unsigned char pattern_byte(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

static int mode_pipe_1m(void)
{
    int p[2];
    pipe_checked(p);
    pid_t pid = fork_checked();
    if (pid == 0) {
        close(p[0]);
        static unsigned char buf[70000];
        size_t sent = 0, chunk = 1;
        while (sent < MIB) {
            size_t n = chunk;
            if (n > MIB - sent)
                n = MIB - sent;
            for (size_t i = 0; i < n; i++)
                buf[i] = pattern_byte(sent + i);
            size_t off = 0;
            while (off < n) {
                ssize_t w = write(p[1], buf + off, n - off);
                CHECK(w > 0, "write: %s", strerror(errno));
                off += w;
            }
            sent += n;
            /* Sizes from 1 byte to past the pipe's 64 KiB. */
            chunk = chunk * 3 + 7;
            if (chunk > sizeof buf)
                chunk = chunk % 4099 + 1;
        }
        _exit(0);
    }
    close(p[1]);
    static unsigned char buf[8192];
    uint64_t h = 1469598103934665603ULL, want = h;
    size_t total = 0;
    for (;;) {
        ssize_t n = read(p[0], buf, sizeof buf);
        CHECK(n >= 0, "read: %s", strerror(errno));
        if (n == 0)
            break;
        h = fnv1a(h, buf, n);
        total += n;
    }
    for (size_t i = 0; i < MIB; i++) {
        unsigned char c = pattern_byte(i);
        want = fnv1a(want, &c, 1);
    }
    describe_status("writer", wait_for(pid));
    printf("read %zu bytes, checksum %016llx, %s\n", total,
           (unsigned long long)h, h == want ? "as sent" : "WRONG");
    return h == want && total == MIB ? 0 : 1;
}

static int mode_sigpipe(void)
{
    /* A writer whose only reader reads 10 bytes and exits (`prog | head -c 10`). */
    int p[2];
    pipe_checked(p);
    pid_t reader = fork_checked();
    if (reader == 0) {
        close(p[1]);
        char buf[10];
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t n = read(p[0], buf + got, sizeof buf - got);
            CHECK(n > 0, "read: %s", strerror(errno));
            got += n;
        }
        _exit(0);
    }
    pid_t writer = fork_checked();
    if (writer == 0) {
        close(p[0]);
        static char block[4096];
        memset(block, 'y', sizeof block);
        for (;;)
            if (write(p[1], block, sizeof block) < 0)
                _exit(100 + errno);
    }
    close(p[0]);
    close(p[1]);
    describe_status("reader", wait_for(reader));
    describe_status("writer", wait_for(writer));

    /* The same with SIGPIPE ignored: write fails with EPIPE. */
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR, "signal");
    pipe_checked(p);
    close(p[0]);
    errno = 0;
    ssize_t r = write(p[1], "z", 1);
    printf("SIGPIPE ignored: write = %zd (%s)\n", r,
           errno == EPIPE ? "EPIPE" : strerror(errno));
    close(p[1]);
    /* And a child that inherits the ignored disposition survives too (the
     * read end is closed before the fork, so that no reader is left
     * whichever process runs first). */
    pipe_checked(p);
    close(p[0]);
    pid_t pid = fork_checked();
    if (pid == 0) {
        ssize_t w = write(p[1], "z", 1);
        _exit(w < 0 && errno == EPIPE ? 32 : 1);
    }
    close(p[1]);
    describe_status("child with SIGPIPE ignored (32 = EPIPE)", wait_for(pid));
    return 0;
}

static int global_value = 100;
static char global_page[3 * 4096] = {1};

static int mode_cow(void)
{
    int to_child[2], to_parent[2];
    pipe_checked(to_child);
    pipe_checked(to_parent);
    int *heap = malloc(64 * 1024);
    CHECK(heap != NULL, "malloc");
    for (int i = 0; i < 16 * 1024; i++)
        heap[i] = i;
    char *anon = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(anon != MAP_FAILED, "mmap: %s", strerror(errno));
    strcpy(anon, "before");
    volatile int stack_value = 7;
    /* A page the child never writes: stays shared. */
    global_page[5000] = 'p';
    pid_t pid = fork_checked();
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        global_value = 1;
        heap[1000] = -1;
        strcpy(anon, "child");
        stack_value = 11;
        write_byte(to_parent[1]); /* the parent may write now */
        CHECK(read_byte(to_child[0]) == 1, "no go from the parent");
        printf("child sees global %d, heap %d, anon %s, stack %d, "
               "untouched %c\n",
               global_value, heap[1000], anon, stack_value, global_page[5000]);
        fflush(stdout);
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);
    CHECK(read_byte(to_parent[0]) == 1, "no word from the child");
    global_value = 2;
    heap[1000] = -2;
    strcpy(anon, "parent");
    stack_value = 22;
    write_byte(to_child[1]);
    describe_status("child", wait_for(pid));
    printf("parent sees global %d, heap %d, anon %s, stack %d, untouched %c\n",
           global_value, heap[1000], anon, stack_value, global_page[5000]);
    /* After the child is gone, the parent's next write reuses its frame. */
    global_value = 3;
    heap[2000] = -3;
    printf("parent writes again: global %d, heap %d, heap[1999] %d\n",
           global_value, heap[2000], heap[1999]);
    return 0;
}

/* As a shell's children write the same pages of libc's state before they
   exec: each child of the loop writes the same words of the data, the bss
   and the heap, which the parent leaves alone from the first fork on. Each
   child must see the parent's values, not an earlier child's. */
static char bss_page[4096];

static int mode_cow_children(int n)
{
    int *heap = malloc(64 * 1024);
    CHECK(heap != NULL, "malloc");
    heap[1000] = -5;
    global_page[2 * 4096 + 7] = 'p';
    bss_page[9] = 'b';
    for (int i = 1; i <= n; i++) {
        fflush(stdout);
        pid_t pid = fork_checked();
        if (pid == 0) {
            printf("child %d sees data %c, bss %c, heap %d\n", i,
                   global_page[2 * 4096 + 7], bss_page[9], heap[1000]);
            global_page[2 * 4096 + 7] = (char)('0' + i);
            bss_page[9] = (char)('0' + i);
            heap[1000] = -1000 - i;
            fflush(stdout);
            _exit(heap[1000] == -1000 - i ? 0 : 1);
        }
        describe_status("child", wait_for(pid));
    }
    printf("parent keeps data %c, bss %c, heap %d\n", global_page[2 * 4096 + 7],
           bss_page[9], heap[1000]);
    return 0;
}

static int mode_fork_loop(int n)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork %d: %s", i, strerror(errno));
        if (pid == 0)
            _exit(i & 0x7f);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == (i & 0x7f),
              "round %d: status 0x%x", i, status);
    }
    printf("%d rounds of fork, exit and wait\n", n);
    return 0;
}

/* The 16 XMM registers and MXCSR as one block. */
struct sse_state {
    unsigned char xmm[16][16];
    uint32_t mxcsr;
};

static void sse_pattern(struct sse_state *s, unsigned seed)
{
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 16; b++)
            s->xmm[r][b] = (unsigned char)(seed * 31 + r * 16 + b);
    /* Rounding mode and flush-to-zero differ per seed; all exceptions
     * masked. */
    s->mxcsr = 0x1f80 | ((seed & 3) << 13) | ((seed & 4) ? 0x8000 : 0);
}

#define SSE_LOAD(p)                                                        \
    "ldmxcsr 256(" p ")\n"                                                 \
    "movdqu 0(" p "), %%xmm0\n movdqu 16(" p "), %%xmm1\n"                 \
    "movdqu 32(" p "), %%xmm2\n movdqu 48(" p "), %%xmm3\n"                \
    "movdqu 64(" p "), %%xmm4\n movdqu 80(" p "), %%xmm5\n"                \
    "movdqu 96(" p "), %%xmm6\n movdqu 112(" p "), %%xmm7\n"               \
    "movdqu 128(" p "), %%xmm8\n movdqu 144(" p "), %%xmm9\n"              \
    "movdqu 160(" p "), %%xmm10\n movdqu 176(" p "), %%xmm11\n"            \
    "movdqu 192(" p "), %%xmm12\n movdqu 208(" p "), %%xmm13\n"            \
    "movdqu 224(" p "), %%xmm14\n movdqu 240(" p "), %%xmm15\n"
#define SSE_STORE(p)                                                       \
    "stmxcsr 256(" p ")\n"                                                 \
    "movdqu %%xmm0, 0(" p ")\n movdqu %%xmm1, 16(" p ")\n"                 \
    "movdqu %%xmm2, 32(" p ")\n movdqu %%xmm3, 48(" p ")\n"                \
    "movdqu %%xmm4, 64(" p ")\n movdqu %%xmm5, 80(" p ")\n"                \
    "movdqu %%xmm6, 96(" p ")\n movdqu %%xmm7, 112(" p ")\n"               \
    "movdqu %%xmm8, 128(" p ")\n movdqu %%xmm9, 144(" p ")\n"              \
    "movdqu %%xmm10, 160(" p ")\n movdqu %%xmm11, 176(" p ")\n"            \
    "movdqu %%xmm12, 192(" p ")\n movdqu %%xmm13, 208(" p ")\n"            \
    "movdqu %%xmm14, 224(" p ")\n movdqu %%xmm15, 240(" p ")\n"
#define SSE_CLOBBERS                                                       \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

/* Load `in` into the SSE registers, make system call `nr` (three
 * arguments) with nothing in between, and store the registers into
 * `out` right after it returns. */
static long sse_across_syscall(const struct sse_state *in, struct sse_state *out, long nr,
                               long a, long b, long c)
{
    long ret;
    register long r10 __asm__("r10") = 0;
    __asm__ volatile(SSE_LOAD("%[in]") "syscall\n" SSE_STORE("%[out]")
                     : "=a"(ret), "+r"(r10)
                     : [in] "r"(in), [out] "r"(out), "0"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory", SSE_CLOBBERS);
    return ret;
}

static void sse_clobbering_handler(int sig)
{
    (void)sig;
    struct sse_state junk;
    sse_pattern(&junk, 7);
    __asm__ volatile(SSE_LOAD("%0") : : "r"(&junk) : "memory", SSE_CLOBBERS);
}

static void sse_expect(const struct sse_state *want, const struct sse_state *got,
                       const char *who, const char *when)
{
    CHECK(!memcmp(want, got, sizeof *want), "%s: SSE state changed across %s", who, when);
}

static int mode_fpu(void)
{
    int to_child[2], to_parent[2];
    pipe_checked(to_child);
    pipe_checked(to_parent);
    pid_t pid = fork_checked();
    int child = pid == 0;
    const char *who = child ? "child" : "parent";
    struct sse_state mine, after;
    sse_pattern(&mine, child ? 2 : 1);
    int in = child ? to_child[0] : to_parent[0];
    int out = child ? to_parent[1] : to_child[1];
    char byte = 'x';
    for (int i = 0; i < 20; i++) {
        if (!child) {
            long w = sse_across_syscall(&mine, &after, SYS_write, out, (long)&byte, 1);
            CHECK(w == 1, "write: %ld", w);
            sse_expect(&mine, &after, who, "write");
        }
        long r = sse_across_syscall(&mine, &after, SYS_read, in, (long)&byte, 1);
        CHECK(r == 1, "%s read: %ld", who, r);
        sse_expect(&mine, &after, who, "a read that blocked");
        if (child) {
            long w = sse_across_syscall(&mine, &after, SYS_write, out, (long)&byte, 1);
            CHECK(w == 1, "write: %ld", w);
            sse_expect(&mine, &after, who, "write");
        }
    }
    signal(SIGUSR1, sse_clobbering_handler);
    long k = sse_across_syscall(&mine, &after, SYS_kill, getpid(), SIGUSR1, 0);
    CHECK(k == 0, "kill: %ld", k);
    sse_expect(&mine, &after, who, "a signal handler");
    if (child)
        _exit(0);
    int status = wait_for(pid);
    printf("fpu: parent and child kept their SSE state; child status %d\n", status);
    return 0;
}

int main(int argc, char **argv)
{
    /* Line-buffered even into a pipe, so nothing is left in the buffer
     * when a process forks or exits with _exit. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    self = argv[0];
    if (argc < 2) {
        fprintf(stderr, "usage: proc_test MODE [ARG]\n");
        return 2;
    }
    const char *mode = argv[1];
    int arg = argc > 2 ? atoi(argv[2]) : 0;
    if (!strcmp(mode, "exit")) {
        printf("exiting with %d\n", arg);
        return arg;
    }
    if (!strcmp(mode, "raise")) {
        raise(SIGTERM);
        return 1;
    }
    if (!strcmp(mode, "exec_wait"))
        return mode_exec_wait();
    if (!strcmp(mode, "kill_child"))
        return mode_kill_child();
    if (!strcmp(mode, "spawn"))
        return mode_spawn();
    if (!strcmp(mode, "spawn_missing"))
        return mode_spawn_missing();
    if (!strcmp(mode, "zombie_kill"))
        return mode_zombie_kill();
    if (!strcmp(mode, "vfork"))
        return mode_vfork();
    if (!strcmp(mode, "zombie"))
        return mode_zombie();
    if (!strcmp(mode, "wnohang"))
        return mode_wnohang();
    if (!strcmp(mode, "orphan"))
        return mode_orphan();
    if (!strcmp(mode, "parallel"))
        return mode_parallel(arg);
    if (!strcmp(mode, "pipe_1m"))
        return mode_pipe_1m();
    if (!strcmp(mode, "sigpipe"))
        return mode_sigpipe();
    if (!strcmp(mode, "cow"))
        return mode_cow();
    if (!strcmp(mode, "cow_children"))
        return mode_cow_children(arg);
    if (!strcmp(mode, "fork_loop"))
        return mode_fork_loop(arg);
    if (!strcmp(mode, "fpu"))
        return mode_fpu();
    fprintf(stderr, "proc_test: unknown mode %s\n", mode);
    return 2;
}

/* signal_test: signal handlers, one mode per run, each compared by a test
 * with the same run natively (no pid or address is printed).
 *
 *   signal_test segv          catches its own SIGSEGV with SA_SIGINFO: a
 *                             store to an unmapped address and one to a
 *                             read-only page; the handler checks si_addr
 *                             against the bad pointer and siglongjmps out
 *   signal_test altstack      a SIGUSR1 handler with SA_ONSTACK runs on the
 *                             sigaltstack (its locals are inside it), and
 *                             not without SA_ONSTACK
 *   signal_test altstack_flags  in a handler on the alternate stack,
 *                             sigaltstack reports SS_ONSTACK and refuses a
 *                             new stack with EPERM
 *   signal_test sa_restart    a read blocked on a pipe, interrupted by a
 *                             caught SA_RESTART signal, returns the data
 *   signal_test sigsuspend    sigsuspend with SIGCHLD unblocked runs the
 *                             handler, returns EINTR, restores the mask
 *   signal_test blocked       SIGUSR1 raised while blocked stays pending
 *                             until sigprocmask unblocks it, then the
 *                             handler runs once
 *   signal_test kill_handler  a child with a SIGTERM handler blocks in read;
 *                             the parent kills it with SIGTERM; the handler
 *                             writes a line and exits 3
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "check.h"

static sigjmp_buf jump;
static void *volatile fault_addr;
static volatile int fault_signo, fault_code;

static void on_segv(int signo, siginfo_t *info, void *context)
{
    (void)context;
    fault_signo = signo;
    fault_code = info->si_code;
    fault_addr = info->si_addr;
    siglongjmp(jump, 1);
}

static const char *segv_code(int code)
{
    switch (code) {
    case SEGV_MAPERR: return "SEGV_MAPERR";
    case SEGV_ACCERR: return "SEGV_ACCERR";
    default: return "other";
    }
}

static void store_and_catch(const char *what, volatile int *bad)
{
    fault_addr = NULL;
    fault_signo = 0;
    if (sigsetjmp(jump, 1) == 0) {
        *bad = 42;
        printf("%s: the store did not fault\n", what);
        return;
    }
    printf("%s: caught signal %d (%s), %s, si_addr %s\n", what, fault_signo,
           sigabbrev_np(fault_signo), segv_code(fault_code),
           fault_addr == (void *)bad ? "is the bad pointer" : "differs");
}

/* Catch `signo` with an SA_SIGINFO handler. */
static void catch_with_info(int signo, void (*handler)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(signo, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
}

static int mode_segv(void)
{
    catch_with_info(SIGSEGV, on_segv);
    store_and_catch("unmapped", (volatile int *)(uintptr_t)0xdead0008);
    int *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED, "mmap: %s", strerror(errno));
    store_and_catch("read-only", (volatile int *)(ro + 3));
    /* siglongjmp restored the mask: a third fault is caught as well. */
    store_and_catch("unmapped again", (volatile int *)(uintptr_t)0x10);
    sigset_t mask;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    printf("SIGSEGV blocked after siglongjmp: %s\n",
           sigismember(&mask, SIGSEGV) ? "yes" : "no");
    return 0;
}

static void on_trap(int signo, siginfo_t *info, void *context)
{
    fault_signo = signo;
    fault_code = info->si_code;
    fault_addr = info->si_addr;
    /* Stop stepping: sigreturn restores the flags saved here. */
    ((ucontext_t *)context)->uc_mcontext.gregs[REG_EFL] &= ~0x100LL;
}

/* SIGTRAP from int3 and from the trap flag: the handler returns, and the
 * program goes on after the int3 / after the one instruction stepped. */
static int mode_trap(void)
{
    catch_with_info(SIGTRAP, on_trap);
    __asm__ volatile("int3");
    printf("int3: signal %d (%s), si_code %d, si_addr %s\n", fault_signo,
           sigabbrev_np(fault_signo), fault_code, fault_addr ? "set" : "NULL");
    fault_signo = 0;
    /* Set TF with popf: the instruction after popf traps once it ran, and
     * the handler clears TF in the flags sigreturn restores. */
    __asm__ volatile("pushfq\n\t"
                     "orq $0x100, (%%rsp)\n\t"
                     "popfq\n\t"
                     "nop\n\t" ::: "memory", "cc");
    printf("trap flag: signal %d (%s), si_code %d, si_addr %s\n", fault_signo,
           sigabbrev_np(fault_signo), fault_code, fault_addr ? "set" : "NULL");
    return 0;
}

#define ALT_SIZE (64 * 1024)
static char *alt_base;
static volatile int on_alt, reported_onstack, handler_calls;

static void setup_altstack(void (*handler)(int))
{
    alt_base = malloc(ALT_SIZE);
    CHECK(alt_base != NULL, "malloc");
    stack_t ss = {.ss_sp = alt_base, .ss_size = ALT_SIZE, .ss_flags = 0};
    CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
}

static void on_usr1_alt(int signo)
{
    (void)signo;
    char local;
    on_alt = &local >= alt_base && &local < alt_base + ALT_SIZE;
    handler_calls++;
}

static int mode_altstack(void)
{
    setup_altstack(on_usr1_alt);
    raise(SIGUSR1);
    printf("handler calls %d; ran on the alternate stack: %s\n",
           handler_calls, on_alt ? "yes" : "no");
    stack_t after;
    sigaltstack(NULL, &after);
    printf("after the handler: SS_ONSTACK %s, SS_DISABLE %s\n",
           after.ss_flags & SS_ONSTACK ? "set" : "clear",
           after.ss_flags & SS_DISABLE ? "set" : "clear");
    /* Without SA_ONSTACK the handler runs on the normal stack. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_alt;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    raise(SIGUSR1);
    printf("without SA_ONSTACK: handler calls %d; on the alternate stack: %s\n",
           handler_calls, on_alt ? "yes" : "no");
    return 0;
}

static void on_usr1_ask(int signo)
{
    (void)signo;
    stack_t now;
    sigaltstack(NULL, &now);
    reported_onstack = (now.ss_flags & SS_ONSTACK) != 0;
    /* Changing the stack while on it is refused. */
    stack_t other = {.ss_sp = alt_base, .ss_size = ALT_SIZE, .ss_flags = 0};
    errno = 0;
    int r = sigaltstack(&other, NULL);
    printf("in the handler: SS_ONSTACK %s; sigaltstack(new) = %d (%s)\n",
           reported_onstack ? "set" : "clear", r,
           errno == EPERM ? "EPERM" : strerror(errno));
    handler_calls++;
}

static int mode_altstack_flags(void)
{
    setup_altstack(on_usr1_ask);
    raise(SIGUSR1);
    printf("handler calls %d\n", handler_calls);
    return 0;
}

static void on_signal_count(int signo)
{
    (void)signo;
    handler_calls++;
}

/* SA_RESTART: a read blocked on a pipe, interrupted by a caught SIGUSR1 the
 * child sends, carries on and returns the data the child writes next. */
static int mode_sa_restart(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal_count;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    int p[2];
    CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        CHECK(kill(parent, SIGUSR1) == 0, "kill: %s", strerror(errno));
        CHECK(write(p[1], "hello", 5) == 5, "write: %s", strerror(errno));
        _exit(0);
    }
    close(p[1]);
    char buf[16];
    ssize_t n = read(p[0], buf, sizeof buf);
    printf("read = %zd (%.*s), handler calls %d\n", n, n > 0 ? (int)n : 0, buf,
           handler_calls);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    printf("child exited with %d\n", WEXITSTATUS(status));
    return 0;
}

/* sigsuspend: SIGCHLD blocked, a child exits, sigsuspend with an empty mask
 * runs the handler and returns EINTR. */
static int mode_sigsuspend(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal_count;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGCHLD, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigemptyset(&empty);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0)
        _exit(7);
    errno = 0;
    int r = sigsuspend(&empty);
    printf("sigsuspend = %d (%s), SIGCHLD handler calls %d\n", r,
           errno == EINTR ? "EINTR" : strerror(errno), handler_calls);
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("SIGCHLD blocked again after sigsuspend: %s\n",
           sigismember(&now, SIGCHLD) ? "yes" : "no");
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    printf("child exited with %d\n", WEXITSTATUS(status));
    return 0;
}

static void on_usr1_count(int signo)
{
    (void)signo;
    handler_calls++;
}

static int mode_blocked(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1_count;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    sigset_t block, pending;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");
    raise(SIGUSR1);
    raise(SIGUSR1); /* a standard signal: still one pending */
    sigpending(&pending);
    printf("blocked: handler calls %d, SIGUSR1 pending: %s\n", handler_calls,
           sigismember(&pending, SIGUSR1) ? "yes" : "no");
    CHECK(sigprocmask(SIG_UNBLOCK, &block, NULL) == 0, "sigprocmask");
    printf("unblocked: handler calls %d\n", handler_calls);
    sigpending(&pending);
    printf("SIGUSR1 pending now: %s\n",
           sigismember(&pending, SIGUSR1) ? "yes" : "no");
    return 0;
}

static void on_term(int signo)
{
    static const char line[] = "child: caught SIGTERM\n";
    (void)signo;
    (void)!write(1, line, sizeof line - 1);
    _exit(3);
}

static int mode_kill_handler(void)
{
    int ready[2], never[2];
    CHECK(pipe(ready) == 0 && pipe(never) == 0, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(ready[0]);
        close(never[1]);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        CHECK(sigaction(SIGTERM, &sa, NULL) == 0, "sigaction");
        CHECK(write(ready[1], "r", 1) == 1, "write");
        char c;
        ssize_t n = read(never[0], &c, 1); /* blocks: nobody writes */
        printf("child: read returned %zd\n", n);
        _exit(0);
    }
    close(ready[1]);
    close(never[0]);
    char c;
    CHECK(read(ready[0], &c, 1) == 1, "the child did not say it was ready");
    CHECK(kill(pid, SIGTERM) == 0, "kill: %s", strerror(errno));
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    if (WIFEXITED(status))
        printf("child exited with %d\n", WEXITSTATUS(status));
    else
        printf("child killed by signal %d\n", WTERMSIG(status));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: signal_test MODE\n");
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "segv"))
        return mode_segv();
    if (!strcmp(mode, "altstack"))
        return mode_altstack();
    if (!strcmp(mode, "trap"))
        return mode_trap();
    if (!strcmp(mode, "altstack_flags"))
        return mode_altstack_flags();
    if (!strcmp(mode, "sa_restart"))
        return mode_sa_restart();
    if (!strcmp(mode, "sigsuspend"))
        return mode_sigsuspend();
    if (!strcmp(mode, "blocked"))
        return mode_blocked();
    if (!strcmp(mode, "kill_handler"))
        return mode_kill_handler();
    fprintf(stderr, "signal_test: unknown mode %s\n", mode);
    return 2;
}

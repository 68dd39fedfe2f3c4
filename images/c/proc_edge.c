/* proc_edge MODE: corners of processes, threads and signals.
 *   alarm_pause   the parent pauses for its alarm while its child blocks
 *                 reading a pipe; then it lets the child go and reaps it
 *   kill_sigchld  the parent kills its child and waits in pause() for the
 *                 SIGCHLD that brings
 *   thread_exit   a second thread calls exit(5): the process ends with 5
 *   thread_raise  a second thread raises SIGTERM: the process dies of it
 *   alarm_sleep   alarm(1) then sleep(3): SIGALRM (default) ends it first
 *   alarm_ignored SIGALRM ignored: alarm(1) does not cut sleep(2) short
 *   shared_anon   MAP_SHARED anonymous pages, most first touched after a
 *                 fork, carry the child's stores to the parent
 *   thread_kill   pthread_kill and tkill to another thread of the process:
 *                 the handler runs on that thread
 *   sigwait       sigwaitinfo takes a child's SIGUSR1 (with its pid),
 *                 sigtimedwait times out, sigwait takes a blocked SIGALRM
 *   clear_sighand a clone3 child with CLONE_CLEAR_SIGHAND: handled signals
 *                 are back to SIG_DFL, ignored ones stay ignored
 *   syscall_regs  getpid, getuid, getppid and sched_yield by SYSCALL with
 *                 every general register set: each keeps all but RAX,
 *                 RCX (the return address) and R11 (RFLAGS)
 *   spin_child    a child spins without a system call; the parent, asleep
 *                 meanwhile, still wakes, kills it and reaps it
 *   spin_thread   a thread spins on a flag that the main thread sets after
 *                 a sleep; then it is joined
 *   wake_spin     a child wakes its parent, blocked reading a pipe with no
 *                 timeout, by writing to it, then spins without a system
 *                 call; the parent still reads, kills it and reaps it
 *   vfork_spin    a vfork child execs this program spinning (mode
 *                 spin_forever); the parent, released by the exec, still
 *                 runs, kills it and reaps it
 *   spin_itimer   a process spins until its ITIMER_REAL handler has run
 *                 three times, then says so
 *   spin_alarm    alarm(1), then a spin: the default SIGALRM ends it
 *   cputime       CPU time: clocks, times, getrusage and wait4's rusage grow
 *                 with computing, not with sleeping, and count children
 *   stop_cont     job control: SIGSTOP/SIGTSTP stop a child (WUNTRACED,
 *                 waitid WSTOPPED, SIGCHLD CLD_STOPPED), SIGCONT continues
 *                 it (WCONTINUED, CLD_CONTINUED), a signal sent meanwhile
 *                 waits for the continue, SIGKILL ends a stopped child
 *   task_limit    threads (raw clone) that wait on a pipe until clone
 *                 fails: prints the errno and how many were made
 *   cpu_itimer    ITIMER_VIRTUAL and ITIMER_PROF fire as the process
 *                 computes (not while it sleeps), read back, disarm
 *   sigint_catch  says "ready" on stderr, spins until its SIGINT handler
 *                 ran, says "caught SIGINT" and exits 3
 *   sigint_ignore says "ready" on stderr and spins with SIGINT ignored
 *   kill_pgrp     kill(0, SIGUSR1) from a child reaches its own process
 *                 group (itself and the parent) and not a sibling that
 *                 made a group of its own
 *   pshared       process-shared semaphores, mutex and condition variable
 *                 in a MAP_SHARED page: a parent and its child ping-pong
 *                 and signal each other (futexes across processes)
 *   pipe_heap     fill 400 nonblocking pipes with 64 KiB each: in a small
 *                 guest the kernel heap runs short and writes get EAGAIN
 *   cow_oom MIB   touch MIB MiB, fork, the child writes it all: run with
 *                 too little guest memory for two copies, the child dies
 *                 and the parent goes on */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void note(int s) { got = s; }

static int alarm_pause(void)
{
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t c = fork();
    if (c == 0) {
        char b;
        close(p[1]);
        int n = (int)read(p[0], &b, 1);
        printf("child read %d\n", n);
        return 0;
    }
    close(p[0]);
    signal(SIGALRM, note);
    alarm(1);
    pause();
    printf("alarm %d\n", got);
    fflush(stdout);
    close(p[1]);
    int s;
    waitpid(c, &s, 0);
    printf("child status %d\n", s);
    return 0;
}

static int kill_sigchld(void)
{
    signal(SIGCHLD, note);
    pid_t c = fork();
    if (c == 0)
        for (;;)
            pause();
    usleep(1000);
    kill(c, SIGTERM);
    while (!got)
        pause();
    int s;
    waitpid(c, &s, 0);
    printf("got signal %d, child killed by %d\n", got, WTERMSIG(s));
    return 0;
}

static void *exit_five(void *a)
{
    (void)a;
    usleep(1000);
    exit(5);
}

static void *raise_term(void *a)
{
    (void)a;
    raise(SIGTERM);
    printf("not reached\n");
    return 0;
}

static volatile pid_t handled_on;
static volatile pid_t waiter_tid;

static void note_tid(int s)
{
    (void)s;
    handled_on = syscall(SYS_gettid);
}

static void *waiter(void *a)
{
    (void)a;
    waiter_tid = syscall(SYS_gettid);
    while (!handled_on)
        usleep(1000);
    return 0;
}

static int thread_kill(void)
{
    pid_t me = syscall(SYS_gettid);
    signal(SIGUSR1, note_tid);
    for (int round = 0; round < 2; round++) {
        pthread_t t;
        handled_on = 0;
        waiter_tid = 0;
        pthread_create(&t, 0, waiter, 0);
        while (!waiter_tid)
            usleep(1000);
        if (round == 0)
            pthread_kill(t, SIGUSR1);
        else
            syscall(SYS_tkill, waiter_tid, SIGUSR1);
        pthread_join(t, 0);
        printf("%s: handled by %s\n", round ? "tkill" : "pthread_kill",
               handled_on == waiter_tid ? "the target" : handled_on == me ? "the caller" : "another");
    }
    return 0;
}

static int sig_wait(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, 0);
    pid_t c = fork();
    if (c == 0) {
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    siginfo_t si;
    int s = sigwaitinfo(&one, &si);
    printf("sigwaitinfo %d, from the child %d, code %d\n", s, si.si_pid == c, si.si_code);
    sigemptyset(&one);
    sigaddset(&one, SIGUSR2);
    struct timespec ts = {0, 50 * 1000 * 1000};
    s = sigtimedwait(&one, 0, &ts);
    printf("sigtimedwait %d %s\n", s, s < 0 && errno == EAGAIN ? "EAGAIN" : "?");
    sigemptyset(&one);
    sigaddset(&one, SIGALRM);
    alarm(1);
    int got = 0;
    sigwait(&one, &got);
    printf("sigwait %d\n", got);
    int st;
    waitpid(c, &st, 0);
    printf("child status %d\n", st);
    return 0;
}

static int clear_sighand(void)
{
    signal(SIGUSR1, note_tid);
    signal(SIGUSR2, SIG_IGN);
    uint64_t args[11] = {0};
    args[0] = 1ULL << 32; /* CLONE_CLEAR_SIGHAND */
    args[4] = SIGCHLD;
    long c = syscall(SYS_clone3, args, sizeof args);
    if (c == 0) {
        struct sigaction a1, a2;
        sigaction(SIGUSR1, 0, &a1);
        sigaction(SIGUSR2, 0, &a2);
        printf("child: SIGUSR1 %s, SIGUSR2 %s\n", a1.sa_handler == SIG_DFL ? "default" : "handled",
               a2.sa_handler == SIG_IGN ? "ignored" : "not ignored");
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    struct sigaction a1;
    sigaction(SIGUSR1, 0, &a1);
    printf("parent: clone3 %s, SIGUSR1 %s\n", c > 0 ? "ok" : "failed",
           a1.sa_handler == note_tid ? "handled" : "lost");
    return 0;
}

static int shared_anon(void)
{
    char *p = mmap(0, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    strcpy(p, "parent");
    pid_t c = fork();
    if (c == 0) {
        strcpy(p, "child0");
        strcpy(p + 2 * 4096, "child2");
        if (fork() == 0) {
            strcpy(p + 3 * 4096, "grandchild3");
            _exit(0);
        }
        wait(0);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    printf("%s [%s] %s %s\n", p, p + 4096, p + 2 * 4096, p + 3 * 4096);
    return 0;
}

/* SIGKILL child c, reap it and say "WHAT killed by SIG" (1 on failure). */
static int kill_and_reap(pid_t c, const char *what)
{
    kill(c, SIGKILL);
    int st;
    if (waitpid(c, &st, 0) != c)
        return 1;
    printf("%s killed by %d\n", what, WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    return 0;
}

static int spin_child(void)
{
    pid_t c = fork();
    if (c == 0)
        for (;;)
            ;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, 0);
    return kill_and_reap(c, "spinning child");
}

static int wake_spin(void)
{
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t c = fork();
    if (c == 0) {
        /* The parent blocks in its read meanwhile. */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, 0);
        char b = 'x';
        if (write(p[1], &b, 1) != 1)
            _exit(2);
        for (;;)
            ;
    }
    char b;
    if (read(p[0], &b, 1) != 1)
        return 1;
    return kill_and_reap(c, "woken parent's spinning child");
}

static int vfork_spin(const char *self)
{
    pid_t c = vfork();
    if (c == 0) {
        execl(self, self, "spin_forever", (char *)0);
        _exit(127);
    }
    if (c < 0)
        return 1;
    return kill_and_reap(c, "vfork parent's spinning child");
}

static volatile int stop_spinning;
static volatile unsigned long spins;

static void *spinner(void *arg)
{
    (void)arg;
    while (!stop_spinning)
        spins++;
    return 0;
}

static int spin_thread(void)
{
    pthread_t t;
    if (pthread_create(&t, 0, spinner, 0) != 0)
        return 1;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, 0);
    stop_spinning = 1;
    pthread_join(t, 0);
    printf("spinning thread stopped, spun %s\n", spins > 0 ? "yes" : "no");
    return 0;
}

static volatile sig_atomic_t ticks;
static void count_tick(int s)
{
    (void)s;
    ticks++;
}

static int spin_itimer(void)
{
    signal(SIGALRM, count_tick);
    struct itimerval it = {{0, 20 * 1000}, {0, 20 * 1000}};
    setitimer(ITIMER_REAL, &it, 0);
    while (ticks < 3)
        ;
    /* Not the count itself: a tick may land while printf runs (its kernel
       entries are slow on a busy host), and the loop's end is the proof. */
    printf("itimer ran the handler at least 3 times during the spin\n");
    return 0;
}

static long cpu_ms(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void compute_ms(long ms)
{
    long end = cpu_ms(CLOCK_PROCESS_CPUTIME_ID) + ms;
    while (cpu_ms(CLOCK_PROCESS_CPUTIME_ID) < end)
        for (volatile int i = 0; i < 100000; i++)
            ;
}

static long tv_ms(struct timeval tv) { return tv.tv_sec * 1000 + tv.tv_usec / 1000; }

static int cputime(void)
{
    long t0 = cpu_ms(CLOCK_PROCESS_CPUTIME_ID);
    compute_ms(60);
    long t1 = cpu_ms(CLOCK_PROCESS_CPUTIME_ID);
    printf("computing 60 ms: process clock %s, thread clock %s\n",
           t1 - t0 >= 60 ? "grew" : "stuck",
           cpu_ms(CLOCK_THREAD_CPUTIME_ID) >= 60 ? "grew" : "stuck");
    struct timespec nap = {0, 200 * 1000 * 1000};
    nanosleep(&nap, 0);
    long t2 = cpu_ms(CLOCK_PROCESS_CPUTIME_ID);
    printf("sleeping 200 ms: %s\n", t2 - t1 < 100 ? "not counted" : "counted");
    struct tms tm;
    times(&tm);
    printf("times: self %s\n", tm.tms_utime + tm.tms_stime >= 5 ? "counted" : "missing");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("getrusage self: %s\n",
           tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime) >= 50 ? "counted" : "missing");
    pid_t c = fork();
    if (c == 0) {
        compute_ms(80);
        _exit(0);
    }
    int st;
    wait4(c, &st, 0, &ru);
    printf("wait4 rusage of a child computing 80 ms: %s\n",
           tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime) >= 70 ? "counted" : "missing");
    getrusage(RUSAGE_CHILDREN, &ru);
    printf("getrusage children: %s\n",
           tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime) >= 70 ? "counted" : "missing");
    times(&tm);
    printf("times: children %s\n", tm.tms_cutime + tm.tms_cstime >= 6 ? "counted" : "missing");
    return 0;
}

static void chld_code(sigset_t *set, const char *what)
{
    siginfo_t si;
    if (sigwaitinfo(set, &si) != SIGCHLD) {
        printf("%s: no SIGCHLD\n", what);
        return;
    }
    printf("%s: SIGCHLD code %s status %d\n", what,
           si.si_code == CLD_STOPPED     ? "CLD_STOPPED"
           : si.si_code == CLD_CONTINUED ? "CLD_CONTINUED"
           : si.si_code == CLD_KILLED    ? "CLD_KILLED"
                                         : "other",
           si.si_status);
}

static int stop_cont(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, 0);
    pid_t c = fork();
    if (c == 0) {
        /* A process group of its own, whose parent is in another group of
         * the session: never orphaned, so SIGTSTP stops it wherever the
         * test runs (Linux discards it in an orphaned group). */
        setpgid(0, 0);
        for (;;)
            pause();
    }
    setpgid(c, c);
    int st;
    kill(c, SIGSTOP);
    if (waitpid(c, &st, WUNTRACED) != c)
        return 1;
    printf("WUNTRACED: stopped %d by %d\n", WIFSTOPPED(st), WSTOPSIG(st));
    chld_code(&set, "stop");
    printf("WNOHANG|WUNTRACED again: %d\n", (int)waitpid(c, &st, WNOHANG | WUNTRACED));
    kill(c, SIGCONT);
    if (waitpid(c, &st, WCONTINUED) != c)
        return 1;
    printf("WCONTINUED: continued %d\n", WIFCONTINUED(st));
    chld_code(&set, "cont");
    kill(c, SIGTSTP);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, c, &si, WSTOPPED) != 0)
        return 1;
    printf("waitid WSTOPPED: %s by %d\n", si.si_code == CLD_STOPPED ? "CLD_STOPPED" : "other",
           si.si_status);
    chld_code(&set, "tstp");
    kill(c, SIGTERM);
    printf("SIGTERM to the stopped child, WNOHANG: %d\n", (int)waitpid(c, &st, WNOHANG));
    kill(c, SIGCONT);
    if (waitpid(c, &st, 0) != c)
        return 1;
    printf("after SIGCONT: killed by %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    pid_t d = fork();
    if (d == 0)
        for (;;)
            pause();
    kill(d, SIGSTOP);
    waitpid(d, &st, WUNTRACED);
    kill(d, SIGKILL);
    if (waitpid(d, &st, 0) != d)
        return 1;
    printf("SIGKILL to a stopped child: killed by %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    return 0;
}

static int gate[2];

static int wait_gate(void *arg)
{
    (void)arg;
    char c;
    read(gate[0], &c, 1);
    return 0;
}

static int task_limit(void)
{
    if (pipe(gate) != 0)
        return 1;
    int made = 0, err = 0;
    for (;;) {
        char *stack = malloc(16384);
        if (!stack) {
            err = ENOMEM;
            break;
        }
        int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                    CLONE_SYSVSEM;
        if (clone(wait_gate, stack + 16384, flags, 0) < 0) {
            err = errno;
            break;
        }
        if (++made == 100000)
            break;
    }
    printf("clone failed with %s after %d threads\n",
           err == EAGAIN ? "EAGAIN" : err == ENOMEM ? "ENOMEM" : strerror(err), made);
    fflush(stdout);
    /* exit_group ends the waiting threads. */
    return 0;
}

static volatile sig_atomic_t vt, prof;
static void on_vt(int s)
{
    (void)s;
    vt++;
}
static void on_prof(int s)
{
    (void)s;
    prof++;
}

static int cpu_itimer(void)
{
    signal(SIGVTALRM, on_vt);
    signal(SIGPROF, on_prof);
    struct itimerval it = {{0, 20000}, {0, 20000}}, cur;
    setitimer(ITIMER_VIRTUAL, &it, 0);
    getitimer(ITIMER_VIRTUAL, &cur);
    printf("virtual armed: interval %ld us, value %s\n", (long)cur.it_interval.tv_usec,
           cur.it_value.tv_sec == 0 && cur.it_value.tv_usec > 0 && cur.it_value.tv_usec <= 30000
               ? "within it"
               : "wrong");
    while (vt < 3)
        ;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_VIRTUAL, &off, &cur);
    printf("virtual fired %d times while computing; old interval %ld us\n", (int)vt,
           (long)cur.it_interval.tv_usec);
    getitimer(ITIMER_VIRTUAL, &cur);
    printf("disarmed: %ld %ld\n", (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
    struct itimerval once = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_PROF, &once, 0);
    struct timespec nap = {0, 200 * 1000 * 1000};
    nanosleep(&nap, 0);
    printf("prof after a 200 ms sleep: %s\n", prof ? "fired" : "not fired");
    while (!prof)
        ;
    getitimer(ITIMER_PROF, &cur);
    printf("prof fired once while computing; now %ld %ld\n", (long)cur.it_value.tv_sec,
           (long)cur.it_value.tv_usec);
    return 0;
}

static volatile sig_atomic_t intr;
static void on_int(int s)
{
    intr = s;
}

static int sigint_catch(int ignore)
{
    signal(SIGINT, ignore ? SIG_IGN : on_int);
    fprintf(stderr, "ready\n");
    while (!intr)
        ;
    fprintf(stderr, "caught SIGINT\n");
    return 3;
}

static volatile sig_atomic_t usr1;
static void on_usr1(int s)
{
    (void)s;
    usr1++;
}

static int kill_pgrp(void)
{
    setpgid(0, 0);
    signal(SIGUSR1, on_usr1);
    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        signal(SIGUSR1, SIG_DFL);
        close(ready[0]);
        write(ready[1], "a", 1);
        for (;;)
            pause();
    }
    char c;
    read(ready[0], &c, 1); /* A has its own group now */
    pid_t b = fork();
    if (b == 0) {
        signal(SIGUSR1, SIG_DFL);
        kill(0, SIGUSR1);
        _exit(0);
    }
    int st;
    waitpid(b, &st, 0);
    printf("B %s by %d; ", WIFSIGNALED(st) ? "killed" : "exited",
           WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    while (usr1 == 0)
        pause();
    printf("the parent handled SIGUSR1 %d time(s); ", (int)usr1);
    kill(a, SIGKILL);
    waitpid(a, &st, 0);
    printf("A killed by %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    return 0;
}

struct shared_sync {
    sem_t ping, pong;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int value;
};

static int pshared(void)
{
    struct shared_sync *s = mmap(0, sizeof *s, PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED)
        return 1;
    sem_init(&s->ping, 1, 0);
    sem_init(&s->pong, 1, 0);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&s->mu, &ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&s->cv, &ca);
    pid_t c = fork();
    if (c == 0) {
        for (int i = 0; i < 100; i++) {
            sem_wait(&s->ping);
            sem_post(&s->pong);
        }
        pthread_mutex_lock(&s->mu);
        while (s->value == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        int v = s->value;
        pthread_mutex_unlock(&s->mu);
        _exit(v);
    }
    int rounds = 0;
    for (int i = 0; i < 100; i++) {
        sem_post(&s->ping);
        sem_wait(&s->pong);
        rounds++;
    }
    pthread_mutex_lock(&s->mu);
    s->value = 42;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    int st;
    waitpid(c, &st, 0);
    printf("ping-pong %d rounds; the child's condvar saw %d\n", rounds,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

static int pipe_heap(void)
{
    static char b[65536];
    memset(b, 'x', sizeof b);
    int full = 0, err = 0;
    for (int i = 0; i < 400; i++) {
        int p[2];
        if (pipe2(p, O_NONBLOCK) != 0) {
            err = errno;
            break;
        }
        ssize_t w = write(p[1], b, sizeof b);
        if (w < 0) {
            err = errno;
            break;
        }
        if (w == sizeof b)
            full++;
    }
    printf("stopped by %s after %s full pipes\n", err == EAGAIN ? "EAGAIN" : strerror(err),
           full >= 16 ? "many" : "few");
    return 0;
}

static int cow_oom(long mib)
{
    size_t len = (size_t)mib << 20;
    char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    memset(p, 1, len);
    pid_t c = fork();
    if (c < 0) {
        printf("fork: %s\n", strerror(errno));
        return 0;
    }
    if (c == 0) {
        memset(p, 2, len);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    if (WIFSIGNALED(st))
        printf("child killed by %d\n", WTERMSIG(st));
    else
        printf("child exited with %d\n", WEXITSTATUS(st));
    printf("parent still sees %d\n", p[len - 1]);
    return 0;
}

/* regs_after(nr, out): SYSCALL `nr` with every other general register
 * holding a pattern, then store rbx, rbp, rdi, rsi, rdx, r8, r9, r10,
 * r12-r15, rcx, r11 and the return address into out[0..15]. */
void regs_after(unsigned long nr, unsigned long *out);
__asm__(".text\n"
        ".globl regs_after\n"
        "regs_after:\n"
        ".intel_syntax noprefix\n"
        "    push rbx\n    push rbp\n    push r12\n    push r13\n"
        "    push r14\n    push r15\n    push rsi\n"
        "    mov rax, rdi\n"
        "    movabs rbx, 0x1111111111111111\n"
        "    movabs rbp, 0x2222222222222222\n"
        "    movabs rdi, 0x3333333333333333\n"
        "    movabs rsi, 0x4444444444444444\n"
        "    movabs rdx, 0x5555555555555555\n"
        "    movabs r8, 0x6666666666666666\n"
        "    movabs r9, 0x7777777777777777\n"
        "    movabs r10, 0x0888888888888888\n"
        "    movabs r12, 0x0999999999999999\n"
        "    movabs r13, 0x0aaaaaaaaaaaaaaa\n"
        "    movabs r14, 0x0bbbbbbbbbbbbbbb\n"
        "    movabs r15, 0x0ccccccccccccccc\n"
        "    syscall\n"
        "1:  mov rax, [rsp]\n"
        "    mov [rax], rbx\n    mov [rax + 8], rbp\n    mov [rax + 16], rdi\n"
        "    mov [rax + 24], rsi\n    mov [rax + 32], rdx\n    mov [rax + 40], r8\n"
        "    mov [rax + 48], r9\n    mov [rax + 56], r10\n    mov [rax + 64], r12\n"
        "    mov [rax + 72], r13\n    mov [rax + 80], r14\n    mov [rax + 88], r15\n"
        "    mov [rax + 96], rcx\n    mov [rax + 104], r11\n"
        "    lea rcx, [rip + 1b]\n    mov [rax + 112], rcx\n"
        "    pop rsi\n    pop r15\n    pop r14\n    pop r13\n"
        "    pop r12\n    pop rbp\n    pop rbx\n    ret\n"
        ".att_syntax prefix\n");

static int syscall_regs(void)
{
    static const char *names[] = {"rbx", "rbp", "rdi", "rsi", "rdx", "r8",
                                  "r9", "r10", "r12", "r13", "r14", "r15"};
    static const unsigned long want[] = {
        0x1111111111111111, 0x2222222222222222, 0x3333333333333333,
        0x4444444444444444, 0x5555555555555555, 0x6666666666666666,
        0x7777777777777777, 0x0888888888888888, 0x0999999999999999,
        0x0aaaaaaaaaaaaaaa, 0x0bbbbbbbbbbbbbbb, 0x0ccccccccccccccc};
    static const struct { const char *name; unsigned long nr; } calls[] = {
        {"getpid", SYS_getpid}, {"getuid", SYS_getuid},
        {"getppid", SYS_getppid}, {"sched_yield", SYS_sched_yield}};
    for (unsigned c = 0; c < sizeof calls / sizeof calls[0]; c++) {
        unsigned long out[15];
        regs_after(calls[c].nr, out);
        int bad = 0;
        for (unsigned i = 0; i < 12; i++)
            if (out[i] != want[i]) {
                printf("%s: %s changed to %#lx\n", calls[c].name, names[i], out[i]);
                bad = 1;
            }
        if (out[12] != out[14])
            printf("%s: rcx %#lx, not the return address\n", calls[c].name, out[12]), bad = 1;
        if (!(out[13] & 0x200) || (out[13] & 0x100))
            printf("%s: r11 %#lx, not RFLAGS\n", calls[c].name, out[13]), bad = 1;
        if (!bad)
            printf("%s: registers kept\n", calls[c].name);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    pthread_t t;
    if (strcmp(m, "alarm_pause") == 0)
        return alarm_pause();
    if (strcmp(m, "kill_sigchld") == 0)
        return kill_sigchld();
    if (strcmp(m, "thread_exit") == 0 || strcmp(m, "thread_raise") == 0) {
        pthread_create(&t, 0, m[7] == 'e' ? exit_five : raise_term, 0);
        pthread_join(t, 0);
        return 0;
    }
    if (strcmp(m, "alarm_sleep") == 0) {
        alarm(1);
        sleep(3);
        printf("not reached\n");
        return 0;
    }
    if (strcmp(m, "alarm_ignored") == 0) {
        signal(SIGALRM, SIG_IGN);
        alarm(1);
        printf("sleep left %u\n", sleep(2));
        return 0;
    }
    if (strcmp(m, "clear_sighand") == 0)
        return clear_sighand();
    if (strcmp(m, "sigwait") == 0)
        return sig_wait();
    if (strcmp(m, "thread_kill") == 0)
        return thread_kill();
    if (strcmp(m, "shared_anon") == 0)
        return shared_anon();
    if (strcmp(m, "task_limit") == 0)
        return task_limit();
    if (strcmp(m, "cpu_itimer") == 0)
        return cpu_itimer();
    if (strcmp(m, "sigint_catch") == 0 || strcmp(m, "sigint_ignore") == 0)
        return sigint_catch(m[7] == 'i');
    if (strcmp(m, "kill_pgrp") == 0)
        return kill_pgrp();
    if (strcmp(m, "pshared") == 0)
        return pshared();
    if (strcmp(m, "pipe_heap") == 0)
        return pipe_heap();
    if (strcmp(m, "cow_oom") == 0)
        return cow_oom(argc > 2 ? atol(argv[2]) : 16);
    if (strcmp(m, "stop_cont") == 0)
        return stop_cont();
    if (strcmp(m, "cputime") == 0)
        return cputime();
    if (strcmp(m, "syscall_regs") == 0)
        return syscall_regs();
    if (strcmp(m, "wake_spin") == 0)
        return wake_spin();
    if (strcmp(m, "vfork_spin") == 0)
        return vfork_spin(argv[0]);
    if (strcmp(m, "spin_forever") == 0)
        for (;;)
            ;
    if (strcmp(m, "spin_child") == 0)
        return spin_child();
    if (strcmp(m, "spin_thread") == 0)
        return spin_thread();
    if (strcmp(m, "spin_itimer") == 0)
        return spin_itimer();
    if (strcmp(m, "spin_alarm") == 0) {
        alarm(1);
        for (;;)
            ;
    }
    fprintf(stderr, "proc_edge: unknown mode %s\n", m);
    return 2;
}

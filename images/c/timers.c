/* timers MODE: POSIX timers (timer_create and friends).
 *   signal      an interval timer's SIGUSR1 reaches a SA_SIGINFO handler
 *               five times with SI_TIMER, its timer id and sigev_value
 *   settime     timers read back with timer_gettime: relative,
 *               absolute on CLOCK_REALTIME and CLOCK_MONOTONIC, the old
 *               value timer_settime returns, disarming; the errors
 *   overrun     a blocked signal of a 1 ms timer left pending for 30 ms:
 *               sigwaitinfo's si_overrun counts the expiries it merged and
 *               timer_getoverrun agrees
 *   thread_id   SIGEV_THREAD_ID: the signal goes to the named thread,
 *               which takes it with sigwaitinfo
 *   sigev_thread glibc's SIGEV_THREAD: the callback runs in a thread
 *               three times with its sigev_value
 *   fork_exec   a fork child has none of its parent's timers; an armed
 *               timer whose signal would kill is deleted by exec
 *   spin        a process spins without system calls until its timer's
 *               handler has run three times
 *   boottime    a CLOCK_BOOTTIME one-shot timer with TIMER_ABSTIME */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define MS 1000000L

static volatile sig_atomic_t fired, bad_code, bad_value, bad_id;
static timer_t the_timer;
static int the_kernel_id;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    fired++;
    if (si->si_code != SI_TIMER)
        bad_code++;
    if (si->si_value.sival_int != 42)
        bad_value++;
    if (si->si_timerid != the_kernel_id)
        bad_id++;
}

static void set(timer_t t, int flags, long value_ns, long interval_ns,
                struct itimerspec *old)
{
    struct itimerspec its = {
        .it_interval = {interval_ns / 1000000000L, interval_ns % 1000000000L},
        .it_value = {value_ns / 1000000000L, value_ns % 1000000000L},
    };
    CHECK(timer_settime(t, flags, &its, old) == 0, "timer_settime: %s",
          strerror(errno));
}

static long ns_of(struct timespec ts)
{
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* The kernel's id of a glibc timer_t for a signal timer: glibc hands the
 * kernel id out as the timer_t. */
static int kernel_id(timer_t t)
{
    return (int)(intptr_t)t;
}

static int signal_mode(void)
{
    struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO};
    sigaction(SIGUSR1, &sa, 0);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    sev.sigev_value.sival_int = 42;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &the_timer) == 0, "%s",
          strerror(errno));
    the_kernel_id = kernel_id(the_timer);
    set(the_timer, 0, 10 * MS, 10 * MS, 0);
    while (fired < 5)
        sigsuspend(&old);
    CHECK(timer_delete(the_timer) == 0, "%s", strerror(errno));
    printf("handler ran %d times; wrong si_code %d, value %d, timer id %d\n",
           (int)fired, (int)bad_code, (int)bad_value, (int)bad_id);
    return 0;
}

static int settime_mode(void)
{
    struct sigevent none = {.sigev_notify = SIGEV_NONE};
    struct sigevent usr2 = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
    signal(SIGUSR2, SIG_IGN);
    timer_t t;
    struct itimerspec cur, old;
    CHECK(timer_create(CLOCK_MONOTONIC, &usr2, &t) == 0, "%s", strerror(errno));
    CHECK(timer_gettime(t, &cur) == 0, "%s", strerror(errno));
    printf("new timer: value %ld interval %ld\n", ns_of(cur.it_value),
           ns_of(cur.it_interval));
    set(t, 0, 10000 * MS, 0, &old);
    printf("old setting of a disarmed timer: %ld %ld\n", ns_of(old.it_value),
           ns_of(old.it_interval));
    timer_gettime(t, &cur);
    printf("armed for 10 s: value in (9 s, 10 s] %s, interval %ld\n",
           ns_of(cur.it_value) > 9000 * MS && ns_of(cur.it_value) <= 10000 * MS
               ? "yes" : "no",
           ns_of(cur.it_interval));
    set(t, 0, 5000 * MS, 2000 * MS, &old);
    printf("re-armed: old value in (9 s, 10 s] %s, old interval %ld\n",
           ns_of(old.it_value) > 9000 * MS && ns_of(old.it_value) <= 10000 * MS
               ? "yes" : "no",
           ns_of(old.it_interval));
    timer_gettime(t, &cur);
    printf("interval %ld, value in (4 s, 5 s] %s\n", ns_of(cur.it_interval),
           ns_of(cur.it_value) > 4000 * MS && ns_of(cur.it_value) <= 5000 * MS
               ? "yes" : "no");
    set(t, 0, 0, 0, &old);
    timer_gettime(t, &cur);
    printf("disarmed: old value > 0 %s; now %ld %ld\n",
           ns_of(old.it_value) > 0 ? "yes" : "no", ns_of(cur.it_value),
           ns_of(cur.it_interval));
    CHECK(timer_delete(t) == 0, "%s", strerror(errno));

    /* Absolute times. */
    timer_t rt;
    CHECK(timer_create(CLOCK_REALTIME, &none, &rt) == 0, "%s", strerror(errno));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    set(rt, TIMER_ABSTIME, ns_of(now) + 3000 * MS, 0, 0);
    timer_gettime(rt, &cur);
    printf("realtime absolute +3 s: value in (2 s, 3 s] %s\n",
           ns_of(cur.it_value) > 2000 * MS && ns_of(cur.it_value) <= 3000 * MS
               ? "yes" : "no");
    timer_t mono;
    CHECK(timer_create(CLOCK_MONOTONIC, &none, &mono) == 0, "%s",
          strerror(errno));
    clock_gettime(CLOCK_MONOTONIC, &now);
    set(mono, TIMER_ABSTIME, ns_of(now) - 1000 * MS, 0, 0);
    timer_gettime(mono, &cur);
    printf("monotonic absolute in the past, one shot: value %ld\n",
           ns_of(cur.it_value));
    set(mono, TIMER_ABSTIME, ns_of(now) - 1000 * MS + 3, 1000 * MS, 0);
    timer_gettime(mono, &cur);
    printf("the same with a 1 s interval: value in (0, 1 s] %s\n",
           ns_of(cur.it_value) > 0 && ns_of(cur.it_value) <= 1000 * MS ? "yes"
                                                                     : "no");
    timer_delete(rt);
    timer_delete(mono);

    /* Errors. */
    struct itimerspec bad = {.it_value = {1, 1000000000L}};
    long r = timer_settime(t, 0, &bad, 0);
    printf("tv_nsec 10^9: %ld %s\n", r, strerrorname_np(errno));
    r = syscall(SYS_timer_gettime, kernel_id(t), &cur);
    printf("gettime of a deleted timer: %ld %s\n", r, strerrorname_np(errno));
    r = syscall(SYS_timer_delete, kernel_id(t));
    printf("delete of a deleted timer: %ld %s\n", r, strerrorname_np(errno));
    timer_t x;
    r = timer_create(99, &none, &x);
    printf("clock 99: %ld %s\n", r, strerrorname_np(errno));
    struct sigevent sig0 = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = 0};
    r = timer_create(CLOCK_MONOTONIC, &sig0, &x);
    printf("signal 0: %ld %s\n", r, strerrorname_np(errno));
    struct sigevent notify9 = {.sigev_notify = 9, .sigev_signo = SIGUSR1};
    r = timer_create(CLOCK_MONOTONIC, &notify9, &x);
    printf("sigev_notify 9: %ld %s\n", r, strerrorname_np(errno));
    struct sigevent stranger = {.sigev_notify = SIGEV_THREAD_ID,
                                .sigev_signo = SIGUSR1};
    stranger._sigev_un._tid = 999999;
    r = timer_create(CLOCK_MONOTONIC, &stranger, &x);
    printf("SIGEV_THREAD_ID of no thread of ours: %ld %s\n", r,
           strerrorname_np(errno));
    return 0;
}

static int overrun_mode(void)
{
    sigset_t set2;
    sigemptyset(&set2);
    sigaddset(&set2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set2, 0);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2};
    sev.sigev_value.sival_int = 7;
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0, "%s", strerror(errno));
    set(t, 0, MS, MS, 0);
    struct timespec nap = {0, 30 * MS};
    while (nanosleep(&nap, &nap) != 0)
        ;
    printf("getoverrun before the signal is taken: %d\n", timer_getoverrun(t));
    siginfo_t si;
    CHECK(sigwaitinfo(&set2, &si) == SIGUSR2, "%s", strerror(errno));
    int over = timer_getoverrun(t);
    printf("sigwaitinfo: SI_TIMER %s, value %d, overrun > 0 %s, "
           "getoverrun the same %s\n",
           si.si_code == SI_TIMER ? "yes" : "no", si.si_value.sival_int,
           si.si_overrun > 0 ? "yes" : "no", over == si.si_overrun ? "yes" : "no");
    timer_delete(t);
    return 0;
}

static volatile pid_t helper_tid;
static volatile int helper_got, helper_value, helper_code;

static void *helper(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    helper_tid = gettid();
    siginfo_t si;
    helper_got = sigwaitinfo(&s, &si);
    helper_value = si.si_value.sival_int;
    helper_code = si.si_code;
    return 0;
}

static int thread_id_mode(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, 0);
    pthread_t th;
    pthread_create(&th, 0, helper, 0);
    while (!helper_tid)
        sched_yield();
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID,
                           .sigev_signo = SIGUSR1};
    sev._sigev_un._tid = helper_tid;
    sev.sigev_value.sival_int = 77;
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0, "%s", strerror(errno));
    set(t, 0, 20 * MS, 0, 0);
    pthread_join(th, 0);
    sigset_t pending;
    sigpending(&pending);
    printf("helper thread took signal %d (SI_TIMER %s) with value %d; "
           "main thread has it pending: %s\n",
           helper_got, helper_code == SI_TIMER ? "yes" : "no", helper_value,
           sigismember(&pending, SIGUSR1) ? "yes" : "no");
    timer_delete(t);
    return 0;
}

static sem_t ticks;
static volatile int calls, wrong_values;

static void callback(union sigval v)
{
    calls++;
    if (v.sival_int != 99)
        wrong_values++;
    sem_post(&ticks);
}

static int sigev_thread_mode(void)
{
    sem_init(&ticks, 0, 0);
    struct sigevent sev = {.sigev_notify = SIGEV_THREAD,
                           .sigev_notify_function = callback};
    sev.sigev_value.sival_int = 99;
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0, "%s", strerror(errno));
    set(t, 0, 20 * MS, 20 * MS, 0);
    for (int i = 0; i < 3; i++)
        while (sem_wait(&ticks) != 0)
            ;
    timer_delete(t);
    printf("SIGEV_THREAD callback ran at least 3 times, wrong values %d\n",
           (int)wrong_values);
    return 0;
}

static int fork_exec_mode(const char *self)
{
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0, "%s", strerror(errno));
    set(t, 0, 60000 * MS, 0, 0);
    pid_t c = fork();
    if (c == 0) {
        struct itimerspec cur;
        long r = syscall(SYS_timer_gettime, kernel_id(t), &cur);
        printf("fork child: gettime of the parent's timer %ld %s\n", r,
               strerrorname_np(errno));
        return 0;
    }
    int st;
    waitpid(c, &st, 0);
    fflush(stdout);
    /* Due in 30 ms: without exec's deletion, SIGUSR1 kills the new image
     * during its sleep. */
    set(t, 0, 30 * MS, 0, 0);
    char id[16];
    snprintf(id, sizeof id, "%d", kernel_id(t));
    execl(self, self, "after_exec", id, (char *)0);
    perror("execl");
    return 1;
}

static int after_exec_mode(const char *id)
{
    struct timespec nap = {0, 100 * MS};
    nanosleep(&nap, 0);
    struct itimerspec cur;
    long r = syscall(SYS_timer_gettime, atoi(id), &cur);
    printf("after exec: alive; gettime of the old timer %ld %s\n", r,
           strerrorname_np(errno));
    return 0;
}

static volatile sig_atomic_t spins;
static void count(int s)
{
    (void)s;
    spins++;
}

static int spin_mode(void)
{
    signal(SIGUSR1, count);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0, "%s", strerror(errno));
    set(t, 0, 20 * MS, 20 * MS, 0);
    while (spins < 3)
        ;
    timer_delete(t);
    printf("the timer's handler ran 3 times during the spin\n");
    return 0;
}

static int boottime_mode(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 2);
    sigprocmask(SIG_BLOCK, &s, 0);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL,
                           .sigev_signo = SIGRTMIN + 2};
    sev.sigev_value.sival_int = 5;
    timer_t t;
    CHECK(timer_create(CLOCK_BOOTTIME, &sev, &t) == 0, "%s", strerror(errno));
    struct timespec now;
    clock_gettime(CLOCK_BOOTTIME, &now);
    set(t, TIMER_ABSTIME, ns_of(now) + 20 * MS, 0, 0);
    siginfo_t si;
    int got = sigwaitinfo(&s, &si);
    printf("boottime timer: signal SIGRTMIN+%d, value %d, overrun %d\n",
           got - SIGRTMIN, si.si_value.sival_int, si.si_overrun);
    timer_delete(t);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, 0, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    if (strcmp(m, "signal") == 0)
        return signal_mode();
    if (strcmp(m, "settime") == 0)
        return settime_mode();
    if (strcmp(m, "overrun") == 0)
        return overrun_mode();
    if (strcmp(m, "thread_id") == 0)
        return thread_id_mode();
    if (strcmp(m, "sigev_thread") == 0)
        return sigev_thread_mode();
    if (strcmp(m, "fork_exec") == 0)
        return fork_exec_mode(argv[0]);
    if (strcmp(m, "after_exec") == 0 && argc > 2)
        return after_exec_mode(argv[2]);
    if (strcmp(m, "spin") == 0)
        return spin_mode();
    if (strcmp(m, "boottime") == 0)
        return boottime_mode();
    fprintf(stderr, "timers: unknown mode %s\n", m);
    return 2;
}

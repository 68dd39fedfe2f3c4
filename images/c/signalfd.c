/* signalfd MODE: reading pending signals through a file descriptor.
 *   basic     SFD_NONBLOCK|SFD_CLOEXEC: EAGAIN when empty, poll, one and
 *             then two records per read in signal order, a mask update
 *             through the same fd, the errors
 *   blocking  a blocking read waits for a child's SIGUSR1 (its pid in
 *             ssi_pid)
 *   epoll     epoll_wait and select report the signalfd when a child's
 *             SIGUSR2 arrives
 *   sigchld   a child's exit read as SIGCHLD: CLD_EXITED, pid, status
 *   timer     a POSIX timer's signal read from a signalfd: SI_TIMER, the
 *             timer id, the value, then again after the next expiry */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static void block(int a, int b)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, a);
    if (b)
        sigaddset(&s, b);
    sigprocmask(SIG_BLOCK, &s, 0);
}

static sigset_t set_of(int a, int b)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, a);
    if (b)
        sigaddset(&s, b);
    return s;
}

static void nap_ms(long ms)
{
    struct timespec t = {0, ms * 1000000L};
    while (nanosleep(&t, &t) != 0)
        ;
}

static int basic(void)
{
    block(SIGUSR1, SIGUSR2);
    sigset_t one = set_of(SIGUSR1, 0);
    int fd = signalfd(-1, &one, SFD_NONBLOCK | SFD_CLOEXEC);
    CHECK(fd >= 0, "signalfd: %s", strerror(errno));
    printf("cloexec %s, nonblock %s\n",
           fcntl(fd, F_GETFD) & FD_CLOEXEC ? "yes" : "no",
           fcntl(fd, F_GETFL) & O_NONBLOCK ? "yes" : "no");
    struct signalfd_siginfo si[2];
    long n = read(fd, si, sizeof si);
    printf("empty: %ld %s\n", n, strerrorname_np(errno));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    printf("poll empty: %d\n", poll(&p, 1, 0));
    kill(getpid(), SIGUSR2); /* not in the mask */
    printf("poll with SIGUSR2 pending: %d\n", poll(&p, 1, 0));
    kill(getpid(), SIGUSR1);
    n = poll(&p, 1, 0);
    printf("poll with SIGUSR1 pending: %ld revents %#x\n", n, p.revents);
    n = read(fd, si, sizeof si);
    printf("read %ld: signo %u code %d pid is ours %s\n", n, si[0].ssi_signo,
           si[0].ssi_code, si[0].ssi_pid == (uint32_t)getpid() ? "yes" : "no");
    sigset_t two = set_of(SIGUSR1, SIGUSR2);
    printf("mask update returns the fd: %s\n",
           signalfd(fd, &two, 0) == fd ? "yes" : "no");
    kill(getpid(), SIGUSR1);
    n = read(fd, si, sizeof si);
    printf("read %ld: signos %u %u\n", n, si[0].ssi_signo, si[1].ssi_signo);
    sigset_t pending;
    sigpending(&pending);
    printf("still pending: SIGUSR1 %d SIGUSR2 %d\n", sigismember(&pending, SIGUSR1),
           sigismember(&pending, SIGUSR2));
    n = read(fd, si, 100);
    printf("read of 100 bytes: %ld %s\n", n, strerrorname_np(errno));
    n = syscall(SYS_signalfd4, -1, &one, 4, 0);
    printf("sizemask 4: %ld %s\n", n, strerrorname_np(errno));
    n = syscall(SYS_signalfd4, -1, &one, 8, 1);
    printf("flags 1: %ld %s\n", n, strerrorname_np(errno));
    n = signalfd(1, &one, 0);
    printf("signalfd on stdout: %ld %s\n", n, strerrorname_np(errno));
    n = write(fd, si, sizeof si[0]);
    printf("write: %ld %s\n", n, strerrorname_np(errno));
    return 0;
}

static int blocking(void)
{
    block(SIGUSR1, 0);
    sigset_t one = set_of(SIGUSR1, 0);
    int fd = signalfd(-1, &one, 0);
    pid_t parent = getpid();
    pid_t c = fork();
    if (c == 0) {
        nap_ms(20);
        kill(parent, SIGUSR1);
        return 0;
    }
    struct signalfd_siginfo si;
    long n = read(fd, &si, sizeof si);
    printf("blocking read %ld: signo %u from the child %s\n", n, si.ssi_signo,
           si.ssi_pid == (uint32_t)c ? "yes" : "no");
    int st;
    waitpid(c, &st, 0);
    return 0;
}

static int epoll_mode(void)
{
    block(SIGUSR2, 0);
    sigset_t two = set_of(SIGUSR2, 0);
    int fd = signalfd(-1, &two, SFD_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    pid_t parent = getpid();
    pid_t c = fork();
    if (c == 0) {
        nap_ms(20);
        kill(parent, SIGUSR2);
        return 0;
    }
    struct epoll_event out;
    int n = epoll_wait(ep, &out, 1, 5000);
    printf("epoll_wait %d: data %llu events %#x\n", n,
           (unsigned long long)out.data.u64, out.events);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(fd, &r);
    struct timeval tv = {0, 0};
    printf("select: %d ready %d\n", select(fd + 1, &r, 0, 0, &tv), FD_ISSET(fd, &r));
    struct signalfd_siginfo si;
    long got = read(fd, &si, sizeof si);
    printf("read %ld: signo %u\n", got, si.ssi_signo);
    n = epoll_wait(ep, &out, 1, 0);
    printf("epoll_wait after the read: %d\n", n);
    int st;
    waitpid(c, &st, 0);
    return 0;
}

static int sigchld(void)
{
    block(SIGCHLD, 0);
    sigset_t s = set_of(SIGCHLD, 0);
    int fd = signalfd(-1, &s, 0);
    pid_t c = fork();
    if (c == 0)
        _exit(3);
    struct signalfd_siginfo si;
    long n = read(fd, &si, sizeof si);
    printf("read %ld: signo %u code %s pid %s status %d\n", n, si.ssi_signo,
           si.ssi_code == CLD_EXITED ? "CLD_EXITED" : "other",
           si.ssi_pid == (uint32_t)c ? "the child's" : "other", si.ssi_status);
    int st;
    waitpid(c, &st, 0);
    return 0;
}

static int timer_mode(void)
{
    block(SIGRTMIN, 0);
    sigset_t s = set_of(SIGRTMIN, 0);
    int fd = signalfd(-1, &s, 0);
    struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN};
    sev.sigev_value.sival_int = 1234;
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0, "%s", strerror(errno));
    struct itimerspec its = {.it_value = {0, 10000000L},
                             .it_interval = {0, 10000000L}};
    timer_settime(t, 0, &its, 0);
    for (int i = 0; i < 2; i++) {
        struct signalfd_siginfo si;
        long n = read(fd, &si, sizeof si);
        printf("read %ld: SIGRTMIN+%d code SI_TIMER %s, timer id %s, int %d, "
               "ptr %llu\n",
               n, (int)si.ssi_signo - SIGRTMIN, si.ssi_code == SI_TIMER ? "yes" : "no",
               si.ssi_tid == (uint32_t)(intptr_t)t ? "ours" : "other", si.ssi_int,
               (unsigned long long)si.ssi_ptr);
    }
    timer_delete(t);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, 0, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    if (strcmp(m, "basic") == 0)
        return basic();
    if (strcmp(m, "blocking") == 0)
        return blocking();
    if (strcmp(m, "epoll") == 0)
        return epoll_mode();
    if (strcmp(m, "sigchld") == 0)
        return sigchld();
    if (strcmp(m, "timer") == 0)
        return timer_mode();
    fprintf(stderr, "signalfd: unknown mode %s\n", m);
    return 2;
}

/* robust MODE: robust mutexes whose owner dies (the kernel's walk of the
 * robust list at exit).
 *   thread   a thread locks a PTHREAD_MUTEX_ROBUST mutex and exits holding
 *            it: the next lock returns EOWNERDEAD; after
 *            pthread_mutex_consistent the mutex works again
 *   waiter   the main thread already waits in pthread_mutex_lock when the
 *            owner thread exits: it is woken with EOWNERDEAD
 *   process  a fork child locks a process-shared robust mutex in
 *            MAP_SHARED memory and exits: the parent's lock returns
 *            EOWNERDEAD
 *   exec     a thread holds the mutex (in MAP_SHARED memory) when the
 *            process execs: the child that waits for it gets EOWNERDEAD */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static void robust_init(pthread_mutex_t *m, int shared)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (shared)
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    CHECK(pthread_mutex_init(m, &a) == 0, "pthread_mutex_init");
}

static const char *name(int e)
{
    return e == 0 ? "0" : strerrorname_np(e);
}

static pthread_mutex_t mu;
static volatile int locked;

static void *take_and_exit(void *arg)
{
    long wait_ms = (long)arg;
    pthread_mutex_lock(&mu);
    locked = 1;
    if (wait_ms) {
        struct timespec t = {0, wait_ms * 1000000L};
        nanosleep(&t, 0);
    }
    return 0; /* exits holding the mutex */
}

static int thread_mode(void)
{
    robust_init(&mu, 0);
    pthread_t t;
    pthread_create(&t, 0, take_and_exit, 0);
    pthread_join(t, 0);
    int r = pthread_mutex_lock(&mu);
    printf("lock after the owner exited: %s\n", name(r));
    printf("consistent: %s\n", name(pthread_mutex_consistent(&mu)));
    printf("unlock: %s\n", name(pthread_mutex_unlock(&mu)));
    printf("lock again: %s\n", name(pthread_mutex_lock(&mu)));
    pthread_mutex_unlock(&mu);
    return 0;
}

static int waiter_mode(void)
{
    robust_init(&mu, 0);
    pthread_t t;
    pthread_create(&t, 0, take_and_exit, (void *)50L);
    while (!locked)
        sched_yield();
    int r = pthread_mutex_lock(&mu); /* waits: the owner sleeps, then exits */
    printf("waiting lock woken when the owner exited: %s\n", name(r));
    pthread_join(t, 0);
    pthread_mutex_consistent(&mu);
    pthread_mutex_unlock(&mu);
    return 0;
}

static int process_mode(void)
{
    pthread_mutex_t *m = mmap(0, 4096, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap");
    robust_init(m, 1);
    pid_t c = fork();
    if (c == 0) {
        pthread_mutex_lock(m);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    int r = pthread_mutex_lock(m);
    printf("lock after the child died holding it: %s\n", name(r));
    pthread_mutex_consistent(m);
    pthread_mutex_unlock(m);
    return 0;
}

static pthread_mutex_t *shared;

static void *hold_forever(void *arg)
{
    (void)arg;
    pthread_mutex_lock(shared);
    locked = 1;
    for (;;)
        pause();
    return 0;
}

static int exec_mode(const char *self)
{
    shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    CHECK(shared != MAP_FAILED, "mmap");
    robust_init(shared, 1);
    pid_t c = fork();
    if (c == 0) {
        pthread_t t;
        pthread_create(&t, 0, hold_forever, 0);
        while (!locked)
            sched_yield();
        execl(self, self, "exec_done", (char *)0);
        _exit(1);
    }
    int st;
    waitpid(c, &st, 0);
    int r = pthread_mutex_lock(shared);
    printf("lock after the holder's process exec'd: %s (exec'd image exited "
           "%d)\n",
           name(r), WEXITSTATUS(st));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, 0, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    if (strcmp(m, "thread") == 0)
        return thread_mode();
    if (strcmp(m, "waiter") == 0)
        return waiter_mode();
    if (strcmp(m, "process") == 0)
        return process_mode();
    if (strcmp(m, "exec") == 0)
        return exec_mode(argv[0]);
    if (strcmp(m, "exec_done") == 0)
        return 7;
    fprintf(stderr, "robust: unknown mode %s\n", m);
    return 2;
}

/* stdin_reads: read(2) of stdin in every shape a program gives it, with
 * the same output natively and under vmrun.
 *
 *   stdin_reads [LIMIT]
 *
 * Reads stdin to its end (or LIMIT bytes) with reads of 0, 1, 7, 4096,
 * 65536 and 100000 bytes in turn, into a static buffer, a buffer across a
 * page boundary and fresh mmap'd pages not yet touched; between them,
 * reads into a read-only page, into an unmapped one and into a kernel
 * address (EFAULT, nothing taken); with SIGALRM arriving every millisecond (SA_RESTART) and a
 * forked child that reads a part in between (at a fixed point of the
 * stream). Prints what it read: bytes, an FNV-1a hash, whether the bad
 * buffers failed, and the child's share.
 *
 *   stdin_reads bytes
 *
 * Reads stdin one byte a read to its end, with alarms and a spinning
 * child (see bytes_mode).
 *
 *   stdin_reads garble
 *
 * Writes garbage where vmrun's stdin ring is mapped, then reads on to the
 * end (see garble_mode). */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static volatile sig_atomic_t alarms;
static unsigned char big[100000];

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* Read exactly n bytes (fewer only at the end of the input). */
static size_t read_full(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(0, buf + got, n - got);
        CHECK(r >= 0, "read: %s", strerror(errno));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* A read that must fail with EFAULT and take nothing. */
static void bad_read(void *buf, size_t n, unsigned long *faults)
{
    ssize_t r = read(0, buf, n);
    CHECK(r == -1 && errno == EFAULT, "read into %p gave %zd (%s)", buf, r,
          strerror(errno));
    (*faults)++;
}

/* One byte a read to the end, with SIGALRM every 500 µs and a child
 * that spins meanwhile, so that timer ticks come and another task is
 * there to switch to. */
static int bytes_mode(void)
{
    pid_t spinner = fork();
    CHECK(spinner >= 0, "fork");
    if (spinner == 0) {
        for (;;)
            __asm__ volatile("" ::: "memory");
    }
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
    CHECK(sigaction(SIGALRM, &sa, 0) == 0, "sigaction");
    struct itimerval it = {{0, 500}, {0, 500}};
    CHECK(setitimer(ITIMER_REAL, &it, 0) == 0, "setitimer");
    uint64_t hash = 0xcbf29ce484222325ULL;
    unsigned long total = 0;
    unsigned char c;
    ssize_t n;
    while ((n = read(0, &c, 1)) == 1) {
        hash = fnv(hash, &c, 1);
        total++;
    }
    CHECK(n == 0, "read: %s", strerror(errno));
    it = (struct itimerval){{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, 0);
    kill(spinner, SIGKILL);
    waitpid(spinner, 0, 0);
    printf("read %lu bytes one at a time, hash %016llx\n", total,
           (unsigned long long)hash);
    return 0;
}

static sigjmp_buf garbled;

static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(garbled, 1);
}

/* Write garbage where vmrun's stdin ring is mapped (a kernel address
 * natively and on VMX/SVM: SIGSEGV, caught), then read on to the end:
 * the program garbles at most its own input, and the run goes on. */
static int garble_mode(void)
{
    unsigned char buf[4096];
    ssize_t n = read(0, buf, 100);
    CHECK(n > 0, "first read");
    struct sigaction sa = {.sa_handler = on_segv};
    CHECK(sigaction(SIGSEGV, &sa, 0) == 0, "sigaction");
    volatile uint64_t *ring = (volatile uint64_t *)0xffffffffff5ee000UL;
    if (sigsetjmp(garbled, 1) == 0) {
        ring[0] = 0x1234567;     /* the head */
        ring[8] = 0xfffffff0UL;  /* the tail */
        ring[512 + 7] = ~0UL;    /* the bytes */
    }
    if (sigsetjmp(garbled, 1) == 0)
        ring[8] = 0;
    unsigned long total = (unsigned long)n;
    while ((n = read(0, buf, sizeof buf)) > 0)
        total += (unsigned long)n;
    CHECK(n == 0, "read: %s", strerror(errno));
    printf("read on to the end past a garbled ring: %s\n",
           total >= 100 ? "yes" : "no");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "bytes") == 0)
        return bytes_mode();
    if (argc > 1 && strcmp(argv[1], "garble") == 0)
        return garble_mode();
    unsigned long limit = argc > 1 ? strtoul(argv[1], 0, 10) : (unsigned long)-1;
    static const size_t sizes[] = {0, 1, 7, 4096, 65536, 100000, 3};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *ro = mmap(0, 2 * page, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED, "mmap");
    CHECK(mprotect(ro + page, page, PROT_READ) == 0, "mprotect");
    unsigned char *gone = mmap(0, page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(gone != MAP_FAILED && munmap(gone, page) == 0, "munmap");

    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
    CHECK(sigaction(SIGALRM, &sa, 0) == 0, "sigaction");
    struct itimerval it = {{0, 1000}, {0, 1000}};
    CHECK(setitimer(ITIMER_REAL, &it, 0) == 0, "setitimer");

    uint64_t hash = 0xcbf29ce484222325ULL;
    unsigned long total = 0, faults = 0, reads = 0;
    int forked = 0;
    for (size_t k = 0; total < limit; k++) {
        size_t want = sizes[k % nsizes];
        if (want > limit - total)
            want = limit - total;
        unsigned char *buf;
        unsigned char *fresh = 0;
        switch (k % 3) {
        case 0:
            buf = big;
            break;
        case 1: /* across a page boundary */
            buf = big + (page - 5) % sizeof big;
            if (want > sizeof big - (size_t)(buf - big))
                want = sizeof big - (size_t)(buf - big);
            break;
        default: /* pages never touched */
            fresh = mmap(0, want + 2 * page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            CHECK(fresh != MAP_FAILED, "mmap %zu", want);
            buf = fresh + page - 3;
        }
        ssize_t n = read(0, buf, want);
        CHECK(n >= 0, "read of %zu gave %zd (%s)", want, n, strerror(errno));
        reads++;
        if (n == 0 && want > 0)
            break;
        hash = fnv(hash, buf, (size_t)n);
        total += (unsigned long)n;
        if (fresh)
            munmap(fresh, want + 2 * page);
        switch (k % 11) {
        case 2:
            bad_read(ro + page, 100, &faults);
            break;
        case 4:
            bad_read(gone, 4096, &faults);
            break;
        case 6:
            bad_read((void *)0xffffffffff5ef000UL, 64, &faults);
            break;
        }
        if (!forked && total >= 200000 && total < 262144) {
            /* Up to a fixed point of the stream, whatever sizes the
             * pipe's reads returned before. */
            size_t more = read_full(big, 262144 - total);
            hash = fnv(hash, big, more);
            total += more;
        }
        if (!forked && total >= 262144) {
            forked = 1;
            pid_t pid = fork();
            CHECK(pid >= 0, "fork");
            if (pid == 0) {
                /* The child reads 3 reads' worth, then says what. */
                uint64_t h = 0xcbf29ce484222325ULL;
                unsigned long got = 0;
                for (int i = 0; i < 3; i++) {
                    size_t m = read_full(big, 5000);
                    h = fnv(h, big, m);
                    got += (unsigned long)m;
                }
                printf("child: %lu bytes, hash %016llx\n", got,
                       (unsigned long long)h);
                fflush(stdout);
                _exit(0);
            }
            int status;
            CHECK(waitpid(pid, &status, 0) == pid && status == 0, "wait");
        }
    }
    it = (struct itimerval){{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, 0);
    printf("read %lu bytes, hash %016llx, %s\n", total, (unsigned long long)hash,
           faults > 0 && reads > faults ? "bad buffers failed with EFAULT" : "no EFAULT");
    return 0;
}

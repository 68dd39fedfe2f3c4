/* fault_size count PAGES | check | churn ROUNDS MIB: how many faults anonymous
 * memory takes, and that large faults keep every page's contents right.
 *
 * count: map PAGES pages at a 64 KiB-aligned address, write one byte in each
 *        and print "faults N": the minor faults (getrusage) the writes took.
 *        One per page natively (no THP for a mapping this small) and under
 *        `vmrun --fault-size 4k`; one per 64 KiB block under the default.
 * check: fill a 256 KiB region (64 KiB blocks), a 2 MiB-aligned 4 MiB
 *        region (2 MiB pages) and 4 MiB of the brk heap from a 2 MiB-aligned
 *        break (2 MiB pages) page by page with a pattern; munmap one page in
 *        the middle of a block and of a 2 MiB page, make another read-only,
 *        mremap a piece away; fork, and let the child and the parent write
 *        to the shared pages (copy-on-write) and check each other's data
 *        stayed; print one line per step. The output is the same natively.
 * churn ROUNDS MIB: ROUNDS times, map MIB MiB at a 64 KiB-aligned address,
 *        check that every byte of it reads zero, write a pattern, unmap a
 *        16 KiB piece of one block and check the rest, every fourth round
 *        fork a child that writes its own copy and unmaps it, and unmap the
 *        whole mapping: far more memory than a small guest has goes through
 *        unmap and back out as fresh zeroed memory. Prints one line; with a
 *        third argument "faults", also the faults the last round's reads
 *        and writes took (the guest's count: one per 64 KiB block under
 *        --fault-size 64k, also once freed blocks are what it maps). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define PG PAGE_SIZE_4K
#define BLOCK (64UL << 10)
#define HUGE (2UL << 20)

static long minflt(void)
{
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0, "getrusage: %s", strerror(errno));
    return ru.ru_minflt;
}

/* A fresh anonymous read-write mapping of len bytes at an align-aligned
 * address (the slack around it unmapped again). */
static unsigned char *map_aligned(size_t len, size_t align)
{
    unsigned char *raw = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(raw != MAP_FAILED, "mmap: %s", strerror(errno));
    uintptr_t a = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    unsigned char *p = (unsigned char *)a;
    if (p > raw)
        CHECK(munmap(raw, p - raw) == 0, "munmap head: %s", strerror(errno));
    size_t tail = (raw + len + align) - (p + len);
    if (tail > 0)
        CHECK(munmap(p + len, tail) == 0, "munmap tail: %s", strerror(errno));
    return p;
}

/* Grow the program break to an align-aligned address and len bytes past it:
 * the heap area then holds len bytes from that address. */
static unsigned char *brk_aligned(size_t len, size_t align)
{
    uintptr_t cur = (uintptr_t)sbrk(0);
    uintptr_t start = (cur + align - 1) & ~(uintptr_t)(align - 1);
    CHECK(sbrk(start - cur + len) != (void *)-1, "sbrk: %s", strerror(errno));
    return (unsigned char *)start;
}

static unsigned char pattern(size_t page, unsigned seed)
{
    return (unsigned char)(page * 37 + seed * 11 + 1);
}

static void fill(unsigned char *p, size_t pages, unsigned seed)
{
    for (size_t i = 0; i < pages; i++) {
        p[i * PG] = pattern(i, seed);
        p[i * PG + PG - 1] = pattern(i, seed + 1);
    }
}

/* Pages that are still mapped hold (seed) data, but for the skipped page. */
static int holds(unsigned char *p, size_t pages, unsigned seed, size_t skip)
{
    for (size_t i = 0; i < pages; i++) {
        if (i == skip)
            continue;
        if (p[i * PG] != pattern(i, seed) || p[i * PG + PG - 1] != pattern(i, seed + 1))
            return 0;
        for (size_t k = 1; k < PG - 1; k += 509)
            if (p[i * PG + k] != 0)
                return 0;
    }
    return 1;
}

static void count(size_t pages)
{
    volatile unsigned char *p = map_aligned(pages * PG, BLOCK);
    long f0 = minflt();
    for (size_t i = 0; i < pages; i++)
        p[i * PG] = 1;
    long f1 = minflt();
    printf("faults %ld\n", f1 - f0);
}

static void check_region(const char *name, unsigned char *p, size_t pages, size_t hole)
{
    fill(p, pages, 1);
    printf("%s filled: %s\n", name, holds(p, pages, 1, (size_t)-1) ? "ok" : "BAD");
    /* A hole in the middle of a block (or of a 2 MiB page). */
    CHECK(munmap(p + hole * PG, PG) == 0, "munmap: %s", strerror(errno));
    printf("%s after munmap of page %zu: %s\n", name, hole,
           holds(p, pages, 1, hole) ? "ok" : "BAD");
    /* The next page read-only, and back. */
    CHECK(mprotect(p + (hole + 1) * PG, PG, PROT_READ) == 0, "mprotect: %s", strerror(errno));
    printf("%s read-only page reads: %s\n", name,
           p[(hole + 1) * PG] == pattern(hole + 1, 1) ? "ok" : "BAD");
    CHECK(mprotect(p + (hole + 1) * PG, PG, PROT_READ | PROT_WRITE) == 0, "mprotect: %s",
          strerror(errno));
    /* Move the page before the hole elsewhere and back. */
    unsigned char *scratch = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(scratch != MAP_FAILED, "mmap: %s", strerror(errno));
    unsigned char *moved = mremap(p + (hole - 1) * PG, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED,
                                  scratch);
    CHECK(moved == scratch, "mremap: %s", strerror(errno));
    printf("%s mremapped page: %s\n", name, moved[0] == pattern(hole - 1, 1) ? "ok" : "BAD");
    unsigned char *back = mremap(moved, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, p + (hole - 1) * PG);
    CHECK(back == p + (hole - 1) * PG, "mremap back: %s", strerror(errno));
    /* Fill the hole again: a fresh zero page. */
    unsigned char *again = mmap(p + hole * PG, PG, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(again == p + hole * PG, "mmap fixed: %s", strerror(errno));
    printf("%s refilled hole is zero: %s\n", name, again[0] == 0 && again[PG - 1] == 0 ? "ok" : "BAD");
    again[0] = pattern(hole, 1);
    again[PG - 1] = pattern(hole, 2);

    /* Copy-on-write after fork: each side writes its own pattern. */
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int before = holds(p, pages, 1, (size_t)-1);
        fill(p, pages, 5);
        printf("%s child sees parent data, then its own: %s\n", name,
               before && holds(p, pages, 5, (size_t)-1) ? "ok" : "BAD");
        fflush(stdout);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    printf("%s parent data kept after the child wrote: %s\n", name,
           holds(p, pages, 1, (size_t)-1) ? "ok" : "BAD");
    fill(p, pages, 9);
    printf("%s parent writes after fork: %s\n", name, holds(p, pages, 9, (size_t)-1) ? "ok" : "BAD");
    CHECK(munmap(p, pages * PG) == 0, "munmap: %s", strerror(errno));
}

/* Whether every byte of the len bytes at p is zero. */
static int all_zero(const unsigned char *p, size_t len)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < len / 8; i++)
        if (w[i] != 0)
            return 0;
    return 1;
}

static void churn(size_t rounds, size_t mib, int show_faults)
{
    size_t len = mib << 20, pages = len / PG;
    long faults = 0;
    for (size_t r = 0; r < rounds; r++) {
        unsigned char *p = map_aligned(len, BLOCK);
        long f0 = minflt();
        CHECK(all_zero(p, len), "round %zu: fresh memory not zero", r);
        fill(p, pages, (unsigned)r);
        faults = minflt() - f0;
        /* A 16 KiB piece out of the middle of the second block. */
        size_t hole = BLOCK / PG + 4;
        CHECK(munmap(p + hole * PG, 4 * PG) == 0, "munmap piece: %s", strerror(errno));
        for (size_t i = 0; i < pages; i++) {
            if (i >= hole && i < hole + 4)
                continue;
            CHECK(p[i * PG] == pattern(i, (unsigned)r), "round %zu: page %zu lost", r, i);
        }
        if (r % 4 == 3) {
            pid_t pid = fork();
            CHECK(pid >= 0, "fork: %s", strerror(errno));
            if (pid == 0) {
                fill(p, hole, (unsigned)r + 100);
                unsigned char *q = map_aligned(len, BLOCK);
                if (!all_zero(q, len))
                    _exit(2);
                fill(q, pages, (unsigned)r + 200);
                _exit(munmap(q, len) == 0 && munmap(p, len) == 0 ? 0 : 3);
            }
            int status;
            CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "round %zu: child status %#x", r, status);
            CHECK(holds(p, hole, (unsigned)r, (size_t)-1), "round %zu: child's writes seen", r);
        }
        CHECK(munmap(p, len) == 0, "munmap: %s", strerror(errno));
    }
    printf("churn: %zu rounds of %zu MiB, each zero when mapped and intact until unmapped\n",
           rounds, mib);
    if (show_faults)
        printf("last round: %ld faults for %zu pages\n", faults, pages);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2, "usage: fault_size count PAGES | check | churn ROUNDS MIB [faults]");
    if (strcmp(argv[1], "count") == 0) {
        CHECK(argc == 3, "count needs PAGES");
        count(strtoul(argv[2], NULL, 10));
    } else if (strcmp(argv[1], "check") == 0) {
        check_region("64k", map_aligned(4 * BLOCK, BLOCK), 4 * BLOCK / PG, 20);
        check_region("2m", map_aligned(2 * HUGE, HUGE), 2 * HUGE / PG, 700);
        check_region("brk", brk_aligned(2 * HUGE, HUGE), 2 * HUGE / PG, 900);
    } else if (strcmp(argv[1], "churn") == 0) {
        CHECK(argc >= 4, "churn needs ROUNDS MIB");
        churn(strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10),
              argc > 4 && strcmp(argv[4], "faults") == 0);
    } else {
        CHECK(0, "unknown mode \"%s\"", argv[1]);
    }
    return 0;
}

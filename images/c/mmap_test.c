/* mmap_test: anonymous mmap, munmap and mprotect with Linux's semantics.
 *
 *   mmap_test                     non-fatal checks; prints "mmap ok", exit 0
 *   mmap_test segv-after-munmap   writes to a page it unmapped: dies of SIGSEGV
 *   mmap_test segv-after-mprotect writes to a page made PROT_READ: SIGSEGV
 *
 * The fatal modes first print "touching 0x<address>\n" (with write(2)) so a
 * test can check the fault address the VMM reports. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

#define PAGE PAGE_SIZE_4K
#define PAGES 8
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)
#define LAZY_SIZE (64UL << 20)

static unsigned char *map_anon(size_t len)
{
    void *p = mmap(NULL, len, RW, ANON, -1, 0);
    CHECK(p != MAP_FAILED, "mmap(NULL, %zu) failed: %s", len, strerror(errno));
    CHECK((uintptr_t)p % PAGE == 0, "mmap returned unaligned %p", p);
    return p;
}

static void expect_zero_pages(const unsigned char *p, size_t pages)
{
    for (size_t i = 0; i < pages * PAGE; i++)
        CHECK(p[i] == 0, "byte %zu of the mapping at %p is %#x", i, (void *)p, p[i]);
}

static void fill_pages(unsigned char *p, size_t pages)
{
    for (size_t i = 0; i < pages; i++)
        memset(p + i * PAGE, (int)(0xa0 + i), PAGE);
}

static void expect_page(const unsigned char *page, unsigned char value)
{
    for (size_t i = 0; i < PAGE; i++)
        CHECK(page[i] == value, "page %p byte %zu is %#x, expected %#x",
              (void *)page, i, page[i], value);
}

static void expect_errno(long ret, int err, const char *what)
{
    CHECK(ret == -1 && errno == err, "%s: returned %ld, errno %d (%s), expected %s", what,
          ret, errno, strerror(errno), strerror(err));
}

static long mmap_ret(void *addr, size_t len, int prot, int flags)
{
    void *p = mmap(addr, len, prot, flags, -1, 0);
    return p == MAP_FAILED ? -1 : (long)p;
}

static void check_fixed(unsigned char *p)
{
    void *q = mmap(p + 2 * PAGE, 2 * PAGE, RW, ANON | MAP_FIXED, -1, 0);
    CHECK(q == p + 2 * PAGE, "MAP_FIXED returned %p, wanted %p", q, (void *)(p + 2 * PAGE));
    expect_zero_pages(p + 2 * PAGE, 2);
    expect_page(p + 1 * PAGE, 0xa1);
    expect_page(p + 4 * PAGE, 0xa4);
    expect_errno(mmap_ret(p + PAGE, PAGE, RW, ANON | MAP_FIXED_NOREPLACE), EEXIST,
                 "MAP_FIXED_NOREPLACE over a mapping");
}

static void check_mprotect(unsigned char *p)
{
    CHECK(mprotect(p + PAGE, PAGE, PROT_READ) == 0, "mprotect R: %s", strerror(errno));
    expect_page(p + PAGE, 0xa1);
    CHECK(mprotect(p + PAGE, PAGE, RW) == 0, "mprotect RW: %s", strerror(errno));
    memset(p + PAGE, 0x5a, PAGE);
    expect_page(p + PAGE, 0x5a);
}

static void check_munmap(unsigned char *p)
{
    CHECK(munmap(p + 5 * PAGE, PAGE) == 0, "munmap: %s", strerror(errno));
    CHECK(munmap(p + 5 * PAGE, PAGE) == 0, "munmap of a hole: %s", strerror(errno));
    expect_page(p + 4 * PAGE, 0xa4);
    expect_page(p + 6 * PAGE, 0xa6);
    CHECK(munmap(p, PAGES * PAGE) == 0, "munmap across a hole: %s", strerror(errno));
}

static void check_bad_arguments(unsigned char *p)
{
    expect_errno(mmap_ret(NULL, 0, RW, ANON), EINVAL, "mmap with length 0");
    expect_errno(mmap_ret(p + 1, PAGE, RW, ANON | MAP_FIXED), EINVAL,
                 "MAP_FIXED at an unaligned address");
    expect_errno(mmap_ret(NULL, PAGE, RW, MAP_ANONYMOUS), EINVAL,
                 "mmap neither private nor shared");
    expect_errno(munmap(p + 1, PAGE), EINVAL, "munmap at an unaligned address");
    expect_errno(munmap(p, 0), EINVAL, "munmap with length 0");
    expect_errno(mprotect(p + 1, PAGE, PROT_READ), EINVAL, "mprotect unaligned");
}

/* A large mapping is lazy: only the pages touched need memory. */
static void check_lazy(void)
{
    unsigned char *big = map_anon(LAZY_SIZE);
    for (size_t off = 0; off < LAZY_SIZE; off += LAZY_SIZE / 8)
        big[off] = 1;
    for (size_t off = 0; off < LAZY_SIZE; off += LAZY_SIZE / 8)
        CHECK(big[off] == 1 && big[off + 1] == 0, "lazy mapping at offset %zu", off);
    CHECK(munmap(big, LAZY_SIZE) == 0, "munmap of the lazy mapping: %s", strerror(errno));
}

static void announce_touch(const void *addr)
{
    char line[64];
    int n = snprintf(line, sizeof line, "touching %p\n", addr);
    CHECK(write(1, line, (size_t)n) == n, "write failed");
}

static int segv_after_munmap(void)
{
    unsigned char *p = map_anon(3 * PAGE);
    CHECK(munmap(p + PAGE, PAGE) == 0, "munmap: %s", strerror(errno));
    announce_touch(p + PAGE);
    *(volatile unsigned char *)(p + PAGE) = 1;
    return 2;
}

static int segv_after_mprotect(void)
{
    unsigned char *p = map_anon(PAGE);
    p[0] = 1;
    CHECK(mprotect(p, PAGE, PROT_READ) == 0, "mprotect: %s", strerror(errno));
    announce_touch(p);
    *(volatile unsigned char *)p = 2;
    return 2;
}

static int default_mode(void)
{
    unsigned char *p = map_anon(PAGES * PAGE);
    expect_zero_pages(p, PAGES);
    fill_pages(p, PAGES);
    check_fixed(p);
    check_mprotect(p);
    check_bad_arguments(p);
    check_munmap(p);
    check_lazy();
    printf("mmap ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return default_mode();
    if (strcmp(argv[1], "segv-after-munmap") == 0)
        return segv_after_munmap();
    if (strcmp(argv[1], "segv-after-mprotect") == 0)
        return segv_after_mprotect();
    fprintf(stderr, "usage: mmap_test [segv-after-munmap|segv-after-mprotect]\n");
    return 2;
}

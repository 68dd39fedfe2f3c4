/* file_mmap: file-backed mmap, mremap and madvise with Linux's semantics.
 *
 *   file_mmap FILE
 *
 * Creates (or truncates) FILE, writes FILE_SIZE known bytes (not a whole
 * number of pages), then checks:
 *   - MAP_PRIVATE and MAP_SHARED read mappings show the file's bytes, and
 *     the rest of the last page reads zero;
 *   - writing through the MAP_PRIVATE map changes that map only: the shared
 *     map, and the file as read() sees it, keep the original bytes;
 *   - a pwrite() to the file shows through the MAP_SHARED map;
 *   - an 8 MiB anonymous block grown to 16 MiB with MREMAP_MAYMOVE keeps its
 *     contents (the new part reads zero), and shrunk to 1 MiB keeps its start;
 *   - MADV_DONTNEED on an anonymous private page makes it read zero again,
 *     and leaves its neighbour alone.
 * Each check prints one fixed line on stdout (no addresses), so the output
 * is the same natively and under vmrun. A failed check prints "FAILED: ..."
 * on stderr and exits 1. At exit FILE holds the bytes first written (the
 * pwrite is undone), so a test can compare it too. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define PAGE PAGE_SIZE_4K
#define FILE_SIZE 10000UL
#define MAP_LEN (3 * PAGE) /* covers FILE_SIZE: the last page is partial */
#define MIB (1UL << 20)

static unsigned char expected[FILE_SIZE];

static unsigned char pattern(size_t i)
{
    return (unsigned char)('a' + (i * 7 + i / 26) % 26);
}

static void write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        CHECK(n > 0, "write returned %zd: %s", n, strerror(errno));
        buf += n;
        len -= (size_t)n;
    }
}

/* The whole file through read(2) from offset 0, in odd-sized pieces. */
static size_t read_file(int fd, unsigned char *buf, size_t cap)
{
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek: %s", strerror(errno));
    size_t total = 0;
    for (;;) {
        size_t want = cap - total < 777 ? cap - total : 777;
        if (want == 0)
            break;
        ssize_t n = read(fd, buf + total, want);
        CHECK(n >= 0, "read returned %zd: %s", n, strerror(errno));
        if (n == 0)
            break;
        total += (size_t)n;
    }
    return total;
}

static void expect_bytes(const unsigned char *got, const unsigned char *want, size_t len,
                         const char *what)
{
    for (size_t i = 0; i < len; i++)
        CHECK(got[i] == want[i], "%s: byte %zu is %#x, expected %#x", what, i, got[i],
              want[i]);
}

static void expect_zero(const unsigned char *p, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        CHECK(p[i] == 0, "%s: byte %zu is %#x, expected 0", what, i, p[i]);
}

static void file_maps(const char *path)
{
    for (size_t i = 0; i < FILE_SIZE; i++)
        expected[i] = pattern(i);

    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open(%s): %s", path, strerror(errno));
    write_all(fd, expected, FILE_SIZE);
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
    CHECK(st.st_size == (off_t)FILE_SIZE, "st_size %lld", (long long)st.st_size);
    printf("wrote %lu bytes\n", FILE_SIZE);

    unsigned char *priv = mmap(NULL, MAP_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(priv != MAP_FAILED, "mmap MAP_PRIVATE: %s", strerror(errno));
    unsigned char *shared = mmap(NULL, MAP_LEN, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(shared != MAP_FAILED, "mmap MAP_SHARED: %s", strerror(errno));
    CHECK((uintptr_t)priv % PAGE == 0 && (uintptr_t)shared % PAGE == 0, "unaligned maps");

    expect_bytes(priv, expected, FILE_SIZE, "private map");
    printf("private map reads the file: ok\n");
    expect_bytes(shared, expected, FILE_SIZE, "shared map");
    printf("shared map reads the file: ok\n");
    expect_zero(priv + FILE_SIZE, MAP_LEN - FILE_SIZE, "private map past EOF");
    expect_zero(shared + FILE_SIZE, MAP_LEN - FILE_SIZE, "shared map past EOF");
    printf("past end of file reads zero: ok\n");

    /* Copy-on-write: the private map changes, nothing else does. */
    priv[0] = 'X';
    priv[PAGE + 5] = 'Y';
    priv[FILE_SIZE - 1] = 'Z';
    CHECK(priv[0] == 'X' && priv[PAGE + 5] == 'Y' && priv[FILE_SIZE - 1] == 'Z',
          "private writes not visible in the private map");
    expect_bytes(priv + 1, expected + 1, PAGE + 4, "private map around its writes");
    printf("private map takes writes: ok\n");
    expect_bytes(shared, expected, FILE_SIZE, "shared map after private writes");
    printf("shared map unchanged by private writes: ok\n");
    static unsigned char buf[2 * FILE_SIZE];
    size_t n = read_file(fd, buf, sizeof buf);
    CHECK(n == FILE_SIZE, "read %zu bytes back, expected %lu", n, FILE_SIZE);
    expect_bytes(buf, expected, FILE_SIZE, "file after private writes");
    printf("file unchanged by private writes: ok\n");

    /* The shared map is the page cache: a pwrite shows through it. */
    CHECK(pwrite(fd, "SHARED", 6, 2 * PAGE) == 6, "pwrite: %s", strerror(errno));
    CHECK(memcmp(shared + 2 * PAGE, "SHARED", 6) == 0, "shared map misses the pwrite");
    printf("shared map sees pwrite: ok\n");
    CHECK(pwrite(fd, expected + 2 * PAGE, 6, 2 * PAGE) == 6, "pwrite back: %s",
          strerror(errno));

    CHECK(munmap(priv, MAP_LEN) == 0, "munmap private: %s", strerror(errno));
    CHECK(munmap(shared, MAP_LEN) == 0, "munmap shared: %s", strerror(errno));
    n = read_file(fd, buf, sizeof buf);
    CHECK(n == FILE_SIZE, "read %zu bytes after munmap, expected %lu", n, FILE_SIZE);
    expect_bytes(buf, expected, FILE_SIZE, "file after munmap");
    CHECK(close(fd) == 0, "close: %s", strerror(errno));
    printf("file intact after munmap: ok\n");
}

static void mark_pages(unsigned char *p, size_t len)
{
    for (size_t off = 0; off < len; off += PAGE)
        *(uint64_t *)(p + off) = 0x5eed0000UL + off / PAGE;
}

static void expect_marks(const unsigned char *p, size_t len, const char *what)
{
    for (size_t off = 0; off < len; off += PAGE)
        CHECK(*(const uint64_t *)(p + off) == 0x5eed0000UL + off / PAGE,
              "%s: page %zu lost its mark", what, off / PAGE);
}

static void remaps(void)
{
    unsigned char *p = mmap(NULL, 8 * MIB, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap 8 MiB: %s", strerror(errno));
    mark_pages(p, 8 * MIB);
    printf("mapped 8 MiB anonymous\n");

    unsigned char *q = mremap(p, 8 * MIB, 16 * MIB, MREMAP_MAYMOVE);
    CHECK(q != MAP_FAILED, "mremap to 16 MiB: %s", strerror(errno));
    expect_marks(q, 8 * MIB, "after growing");
    for (size_t off = 8 * MIB; off < 16 * MIB; off += PAGE)
        CHECK(*(uint64_t *)(q + off) == 0, "grown page %zu is not zero", off / PAGE);
    q[16 * MIB - 1] = 1;
    printf("mremap to 16 MiB keeps contents: ok\n");

    unsigned char *r = mremap(q, 16 * MIB, 1 * MIB, 0);
    CHECK(r == q, "shrinking mremap moved the block or failed: %s", strerror(errno));
    expect_marks(r, 1 * MIB, "after shrinking");
    printf("mremap down to 1 MiB keeps contents: ok\n");
    CHECK(munmap(r, 1 * MIB) == 0, "munmap: %s", strerror(errno));
}

static void dontneed(void)
{
    unsigned char *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap 2 pages: %s", strerror(errno));
    memset(p, 0xab, 2 * PAGE);
    CHECK(madvise(p, PAGE, MADV_DONTNEED) == 0, "madvise: %s", strerror(errno));
    expect_zero(p, PAGE, "page after MADV_DONTNEED");
    for (size_t i = PAGE; i < 2 * PAGE; i++)
        CHECK(p[i] == 0xab, "neighbour byte %zu is %#x", i, p[i]);
    printf("madvise(MADV_DONTNEED) zeroes the page: ok\n");
    CHECK(munmap(p, 2 * PAGE) == 0, "munmap: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: file_mmap FILE");
    setvbuf(stdout, NULL, _IOLBF, 0);
    file_maps(argv[1]);
    remaps();
    dontneed();
    printf("all checks passed\n");
    return 0;
}

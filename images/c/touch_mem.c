/* touch_mem [MiB]: maps MiB mebibytes (default 200) of anonymous memory,
 * writes one byte in every 4 KiB page, reads them all back as a checksum and
 * prints "touched <MiB> MiB". A demand-paging workload: one fault per page. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "check.h"

static size_t parse_mib(int argc, char **argv)
{
    if (argc < 2)
        return 200;
    char *end;
    unsigned long mib = strtoul(argv[1], &end, 10);
    CHECK(*argv[1] != '\0' && *end == '\0' && mib > 0, "bad size \"%s\" (MiB)", argv[1]);
    return mib;
}

static uint64_t touch_pages(volatile unsigned char *p, size_t pages)
{
    uint64_t expected = 0;
    for (size_t i = 0; i < pages; i++) {
        p[i * PAGE_SIZE_4K] = (unsigned char)(i * 31 + 7);
        expected += (unsigned char)(i * 31 + 7);
    }
    return expected;
}

static uint64_t sum_pages(volatile unsigned char *p, size_t pages)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < pages; i++)
        sum += p[i * PAGE_SIZE_4K];
    return sum;
}

int main(int argc, char **argv)
{
    size_t mib = parse_mib(argc, argv);
    size_t pages = mib << 8;
    unsigned char *p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap of %zu MiB: %s", mib, strerror(errno));
    uint64_t expected = touch_pages(p, pages);
    uint64_t sum = sum_pages(p, pages);
    CHECK(sum == expected, "checksum %llu, expected %llu", (unsigned long long)sum,
          (unsigned long long)expected);
    printf("touched %zu MiB\n", mib);
    return 0;
}

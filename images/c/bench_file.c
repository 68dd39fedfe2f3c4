/* bench_file read [PAGES] | bench_file cow [PAGES]: faults on the program's
 * own file pages.
 *
 * read: read one byte of each 4 KiB page of an 8 MiB initialised const array
 *       (.rodata: a read-only private file mapping), timing every touch.
 * cow:  write one byte of each page of an 8 MiB initialised array (.data: a
 *       private file mapping, so each first write copies the page).
 * PAGES (default and at most 2048) limits how many pages are touched.
 * Output: see bench.h. */
#include "bench.h"

#define ARRAY_BYTES (8u << 20)
#define ARRAY_PAGES (ARRAY_BYTES >> 12)

/* Non-zero initialisers keep both arrays in the file (not .bss). */
static const unsigned char ro[ARRAY_BYTES] = {1, 2, 3};
static unsigned char rw[ARRAY_BYTES] = {4, 5, 6};
static uint64_t samples[ARRAY_PAGES];

int main(int argc, char **argv)
{
    bench_buffer_stdout();
    CHECK(argc >= 2, "usage: bench_file read|cow [PAGES]");
    int write = strcmp(argv[1], "cow") == 0;
    CHECK(write || strcmp(argv[1], "read") == 0, "unknown mode \"%s\"", argv[1]);
    size_t pages = bench_arg(argc, argv, 2, ARRAY_PAGES);
    CHECK(pages <= ARRAY_PAGES, "at most %u pages", ARRAY_PAGES);
    volatile const unsigned char *r = ro;
    volatile unsigned char *w = rw;
    unsigned sum = 0;
    bench_marker();
    long f0 = bench_minflt();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < pages; i++) {
        uint64_t t0 = bench_tsc();
        if (write)
            w[i << 12] = 7;
        else
            sum += r[i << 12];
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    long f1 = bench_minflt();
    bench_marker();
    CHECK(write || sum == 1, "read back %u from the const array, expected 1", sum);
    bench_print_samples(samples, pages);
    bench_print_total(cycles, pages, f0, f1);
    return 0;
}

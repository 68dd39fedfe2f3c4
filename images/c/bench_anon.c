/* bench_anon bulk [MiB] | small [ROUNDS] | unmap [ROUNDS]: anonymous page faults
 * and unmapping.
 *
 * bulk: mmap MiB (default 256) of fresh anonymous memory and write one byte
 *       in each 4 KiB page in order, timing every touch. A touch is a fault
 *       where the page is not mapped yet (on the guest, 2 MiB pages make most
 *       touches free; natively, transparent huge pages decide).
 * small: ROUNDS (default 200) times, mmap 64 KiB, write each of its 16 pages
 *       (timed; each a 4 KiB fault, the region being too small for a 2 MiB
 *       page) and munmap it again.
 * unmap: ROUNDS (default 200) times, mmap 1 MiB, write each of its 256
 *       pages and munmap it; each sample is the munmap's time per page.
 * Output: see bench.h. */
#include <errno.h>
#include <sys/mman.h>

#include "bench.h"

#define SMALL_PAGES 16

/* Room for n samples, touched first so that its own faults stay out of
 * the timed loop. */
static uint64_t *samples_for(size_t n)
{
    uint64_t *samples = malloc(n * sizeof *samples);
    CHECK(samples != NULL, "malloc of %zu samples", n);
    memset(samples, 0, n * sizeof *samples);
    return samples;
}

static void bulk(size_t mib)
{
    size_t pages = mib << 8;
    uint64_t *samples = samples_for(pages);
    volatile unsigned char *p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap of %zu MiB: %s", mib, strerror(errno));
    bench_marker();
    long f0 = bench_minflt();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < pages; i++) {
        uint64_t t0 = bench_tsc();
        p[i << 12] = 1;
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    long f1 = bench_minflt();
    bench_marker();
    bench_print_samples(samples, pages);
    bench_print_total(cycles, pages, f0, f1);
}

static void small(size_t rounds)
{
    size_t n = rounds * SMALL_PAGES;
    uint64_t *samples = samples_for(n);
    uint64_t faulting = 0;
    bench_marker();
    long f0 = bench_minflt();
    for (size_t r = 0; r < rounds; r++) {
        volatile unsigned char *p = mmap(NULL, SMALL_PAGES << 12, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
        for (size_t i = 0; i < SMALL_PAGES; i++) {
            uint64_t t0 = bench_tsc();
            p[i << 12] = 1;
            uint64_t t = bench_tsc() - t0;
            samples[r * SMALL_PAGES + i] = t;
            faulting += t;
        }
        CHECK(munmap((void *)p, SMALL_PAGES << 12) == 0, "munmap: %s", strerror(errno));
    }
    long f1 = bench_minflt();
    bench_marker();
    bench_print_samples(samples, n);
    /* The total is the sum of the timed touches (mmap/munmap excluded). */
    bench_print_total(faulting, n, f0, f1);
}

#define UNMAP_PAGES 256

static void unmap_rounds(size_t rounds)
{
    uint64_t *samples = samples_for(rounds);
    uint64_t unmapping = 0;
    bench_marker();
    long f0 = bench_minflt();
    for (size_t r = 0; r < rounds; r++) {
        volatile unsigned char *p = mmap(NULL, UNMAP_PAGES << 12, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
        for (size_t i = 0; i < UNMAP_PAGES; i++)
            p[i << 12] = 1;
        uint64_t t0 = bench_tsc();
        CHECK(munmap((void *)p, UNMAP_PAGES << 12) == 0, "munmap: %s", strerror(errno));
        uint64_t t = bench_tsc() - t0;
        samples[r] = t / UNMAP_PAGES;
        unmapping += t;
    }
    long f1 = bench_minflt();
    bench_marker();
    bench_print_samples(samples, rounds);
    /* The total is the munmaps' time, per page. */
    bench_print_total(unmapping, rounds * UNMAP_PAGES, f0, f1);
}

int main(int argc, char **argv)
{
    bench_buffer_stdout();
    CHECK(argc >= 2, "usage: bench_anon bulk [MiB] | small [ROUNDS] | unmap [ROUNDS]");
    if (strcmp(argv[1], "bulk") == 0)
        bulk(bench_arg(argc, argv, 2, 256));
    else if (strcmp(argv[1], "small") == 0)
        small(bench_arg(argc, argv, 2, 200));
    else if (strcmp(argv[1], "unmap") == 0)
        unmap_rounds(bench_arg(argc, argv, 2, 200));
    else
        CHECK(0, "unknown mode \"%s\"", argv[1]);
    return 0;
}

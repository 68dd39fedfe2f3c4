/* bench_fileio cached [N] | bench_fileio read1m [N] | bench_fileio open [N] |
 * bench_fileio stat [N]: file system calls on a 1 MiB file.
 *
 * The program first creates a 1 MiB file in its current directory (vmrun's
 * guest sees the host's current directory read-write, so the same program
 * works in both places) with a name unique to this run, and removes it at
 * exit. Then, N times (default 2000 for cached and open, 100 for read1m):
 *
 * cached: pread(fd, buf, 4096, 0): one page that is already in the page
 *         cache (read once before the loop).
 * read1m: pread(fd, buf, 1 MiB, 0): the whole file in one call (repeated
 *         until 1 MiB arrived if a call returns less); one sample per MiB.
 * open:   open(path, O_RDONLY) and close() of the file.
 * stat:   stat() of the file by its absolute path.
 * Output: see bench.h. */
#include "bench.h"

#include <fcntl.h>
#include <sys/stat.h>

#define FILE_BYTES (1u << 20)

static char path[64];
static char abs_path[4200];
static unsigned char buf[FILE_BYTES] __attribute__((aligned(4096)));

static void remove_file(void)
{
    unlink(path);
}

/* Create the 1 MiB file; its bytes are i % 251. */
static void create_file(void)
{
    snprintf(path, sizeof path, "vmrun-bench-%d-%llx.tmp", (int)getpid(),
             (unsigned long long)(bench_tsc() & 0xffffffffffULL));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0, "cannot create %s in the current directory", path);
    atexit(remove_file);
    for (size_t i = 0; i < FILE_BYTES; i++)
        buf[i] = (unsigned char)(i % 251);
    for (size_t done = 0; done < FILE_BYTES;) {
        ssize_t n = write(fd, buf + done, FILE_BYTES - done);
        CHECK(n > 0, "write to %s returned %zd", path, n);
        done += (size_t)n;
    }
    CHECK(close(fd) == 0, "close of %s", path);
}

/* Read `len` bytes at offset 0 into buf, in as many calls as it takes. */
static void read_all(int fd, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
        CHECK(n > 0, "pread at %zu returned %zd", done, n);
        done += (size_t)n;
    }
}

int main(int argc, char **argv)
{
    bench_buffer_stdout();
    CHECK(argc >= 2, "usage: bench_fileio cached|read1m|open|stat [N]");
    int cached = strcmp(argv[1], "cached") == 0;
    int read1m = strcmp(argv[1], "read1m") == 0;
    int opens = strcmp(argv[1], "open") == 0;
    int stats = strcmp(argv[1], "stat") == 0;
    CHECK(cached || read1m || opens || stats, "unknown mode \"%s\"", argv[1]);
    size_t n = bench_arg(argc, argv, 2, read1m ? 100 : 2000);
    uint64_t *samples = calloc(n, sizeof *samples);
    CHECK(samples != NULL, "calloc of %zu samples", n);
    memset(samples, 0, n * sizeof *samples);
    create_file();
    CHECK(getcwd(abs_path, 4096) != NULL, "getcwd");
    strcat(abs_path, "/");
    strcat(abs_path, path);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0, "cannot open %s", path);
    size_t len = cached ? 4096 : FILE_BYTES;
    /* Warm up: the pages in the page cache, the buffer faulted in. */
    memset(buf, 0, sizeof buf);
    read_all(fd, len);
    bench_marker();
    long f0 = bench_minflt();
    uint64_t start = bench_tsc();
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = bench_tsc();
        if (opens) {
            int f = open(path, O_RDONLY);
            CHECK(f >= 0, "open of %s", path);
            close(f);
        } else if (stats) {
            struct stat st;
            CHECK(stat(abs_path, &st) == 0 && st.st_size == FILE_BYTES, "stat of %s", abs_path);
        } else if (cached) {
            ssize_t r = pread(fd, buf, 4096, 0);
            CHECK(r == 4096, "pread returned %zd", r);
        } else {
            read_all(fd, FILE_BYTES);
        }
        samples[i] = bench_tsc() - t0;
    }
    uint64_t cycles = bench_tsc() - start;
    long f1 = bench_minflt();
    bench_marker();
    CHECK(buf[4095] == 4095 % 251, "read back %u at offset 4095", buf[4095]);
    CHECK(!read1m || buf[FILE_BYTES - 1] == (FILE_BYTES - 1) % 251, "bad last byte %u",
          buf[FILE_BYTES - 1]);
    close(fd);
    bench_print_samples(samples, n);
    bench_print_total(cycles, n, f0, f1);
    return 0;
}

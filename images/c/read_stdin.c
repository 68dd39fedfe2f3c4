/* read_stdin: cat. Copies standard input to standard output until EOF with
 * read(2)/write(2), then prints "read <N> bytes" on stderr.
 *
 *   read_stdin [SIZE]
 *
 * Without SIZE the buffer is 1000 bytes on the stack (odd-sized reads, to
 * cross any buffer boundary); with it, SIZE bytes page-aligned on the heap
 * (reads and writes over many pages, as coreutils' cat makes). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(1, buf, len);
        CHECK(n > 0, "write returned %zd: %s", n, strerror(errno));
        buf += n;
        len -= (size_t)n;
    }
}

int main(int argc, char **argv)
{
    char small[1000];
    char *buf = small;
    size_t size = sizeof small;
    if (argc > 1) {
        size = strtoul(argv[1], 0, 10);
        buf = aligned_alloc(4096, (size + 4095) / 4096 * 4096);
        CHECK(size > 0 && buf, "buffer of %s bytes", argv[1]);
    }
    unsigned long total = 0;
    for (;;) {
        ssize_t n = read(0, buf, size);
        CHECK(n >= 0, "read returned %zd: %s", n, strerror(errno));
        if (n == 0)
            break;
        write_all(buf, (size_t)n);
        total += (unsigned long)n;
    }
    fprintf(stderr, "read %lu bytes\n", total);
    return 0;
}

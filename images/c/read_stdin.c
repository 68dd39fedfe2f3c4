/* read_stdin: cat. Copies standard input to standard output until EOF with
 * read(2)/write(2) (odd-sized reads, to cross any buffer boundary), then
 * prints "read <N> bytes" on stderr. */
#include <errno.h>
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

int main(void)
{
    char buf[1000];
    unsigned long total = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        CHECK(n >= 0, "read returned %zd: %s", n, strerror(errno));
        if (n == 0)
            break;
        write_all(buf, (size_t)n);
        total += (unsigned long)n;
    }
    fprintf(stderr, "read %lu bytes\n", total);
    return 0;
}

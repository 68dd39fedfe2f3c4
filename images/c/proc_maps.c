/* proc_maps: copies its own /proc/self/maps to stdout with read(2) in small
 * pieces (so a reader that returns part of the file at a time is
 * exercised), then exits 0. A test compares it with the host's view of the
 * same address space, `vmrun --maps` at exit: nothing is mapped or
 * unmapped after the file is read. */
#include <errno.h>
#include <fcntl.h>
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
    int fd = open("/proc/self/maps", O_RDONLY);
    CHECK(fd >= 0, "open /proc/self/maps: %s", strerror(errno));
    char buf[200];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        CHECK(n >= 0, "read returned %zd: %s", n, strerror(errno));
        if (n == 0)
            break;
        write_all(buf, (size_t)n);
    }
    CHECK(close(fd) == 0, "close: %s", strerror(errno));
    return 0;
}

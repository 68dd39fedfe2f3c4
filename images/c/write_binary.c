/* write_binary: byte-exact output. Writes all 256 byte values, a 4 KiB chunk
 * full of NULs and other bytes, a 64 KiB + 1 chunk (larger than any sensible
 * output buffer), and one writev of three iovecs, then "\nend\n". Every
 * write must be complete; a short write exits 1 with a message on stderr. */
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "check.h"

#define BIG (64 * 1024 + 1)

static void write_all(const void *buf, size_t len)
{
    ssize_t n = write(1, buf, len);
    CHECK(n == (ssize_t)len, "write of %zu bytes returned %zd", len, n);
}

static void write_byte_values(void)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    write_all(all, sizeof all);
}

static void write_pattern(size_t len, unsigned mult)
{
    static unsigned char buf[BIG];
    for (size_t i = 0; i < len; i++)
        buf[i] = i % 3 == 0 ? 0 : (unsigned char)(i * mult);
    write_all(buf, len);
}

static void write_vector(void)
{
    static const char nuls[] = {'a', 0, 0, 'b', 0, '\n', (char)0xff};
    struct iovec iov[3] = {
        {.iov_base = "first iovec|", .iov_len = 12},
        {.iov_base = (void *)nuls, .iov_len = sizeof nuls},
        {.iov_base = "|third iovec", .iov_len = 12},
    };
    ssize_t n = writev(1, iov, 3);
    CHECK(n == 12 + (ssize_t)sizeof nuls + 12, "writev returned %zd", n);
}

int main(void)
{
    write_byte_values();
    write_pattern(4096, 13);
    write_pattern(BIG, 7);
    write_vector();
    write_all("\nend\n", 5);
    return 0;
}

/* vsyscall: calls the legacy vsyscall page's three entry points
 * (0xffffffffff600000 gettimeofday, +0x400 time, +0x800 getcpu) as old
 * static binaries do, and prints what they returned (checked, not raw
 * times), then execs argv[1] (if given) while it holds argv[1] open for
 * writing: execve must fail with ETXTBSY. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

typedef long (*time_fn)(long *);
typedef int (*gtod_fn)(struct timeval *, void *);
typedef int (*getcpu_fn)(unsigned *, unsigned *, void *);

int main(int argc, char **argv)
{
    long t = ((time_fn)0xffffffffff600400)(0);
    struct timeval tv;
    int r = ((gtod_fn)0xffffffffff600000)(&tv, 0);
    unsigned cpu = 99, node = 99;
    int c = ((getcpu_fn)0xffffffffff600800)(&cpu, &node, 0);
    printf("time plausible %d\n", t > 1700000000);
    printf("gettimeofday %d, plausible %d, agrees with time %d\n", r, tv.tv_sec > 1700000000,
           tv.tv_sec - t < 5);
    printf("getcpu %d, cpu below 1024 %d, node %u\n", c, cpu < 1024, node);
    if (argc > 1) {
        int fd = open(argv[1], O_WRONLY);
        if (fd < 0) {
            perror("open");
            return 1;
        }
        char *args[] = {argv[1], 0};
        execv(argv[1], args);
        printf("exec of a file open for writing: %s\n", errno == ETXTBSY ? "ETXTBSY" : strerror(errno));
    }
    return 0;
}

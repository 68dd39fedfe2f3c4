/*
 * maps_probe: builds a small address space (heap, anonymous mappings, one
 * made read-only, one unmapped again), then prints /proc/self/maps if it
 * can open it. Natively (under `setarch -R`) that prints what Linux built;
 * under vmrun there is no /proc, and `vmrun --maps` prints the guest's
 * VMAs at exit instead. The two are compared line by line.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static char bss[3 * 4096];

int main(void)
{
    bss[0] = 1;
    char *heap = sbrk(3 * 4096);
    heap[0] = 1;
    char *a = mmap(NULL, 5 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, 2 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED)
        return 1;
    a[0] = 1;
    mprotect(a + 4096, 4096, PROT_READ);
    munmap(a + 3 * 4096, 4096);
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0)
        return 0;
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        write(1, buf, (size_t)n);
    return 0;
}

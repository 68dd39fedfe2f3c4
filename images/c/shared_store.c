/* shared_store FILE
 *
 * Maps the first page of FILE (which must exist and hold at least 64 bytes)
 * MAP_SHARED read-write, stores a line at its start through the map, and
 * exits without munmap or msync: the line reaches the file only if the
 * kernel writes shared mappings back at exit. Prints nothing; exits 1 if a
 * call fails. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static const char line[] = "stored through a shared map\n";
    if (argc != 2)
        return 1;
    int fd = open(argv[1], O_RDWR);
    if (fd < 0)
        return 1;
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return 1;
    close(fd);
    memcpy(p, line, sizeof line - 1);
    return 0;
}

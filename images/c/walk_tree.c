/* walk_tree: what du and find do to a directory tree, and the reuse of an
 * fd number that a stat by a directory fd must not be fooled by.
 *
 *   walk_tree DIR FILE SUBDIR
 *
 * DIR is a directory, FILE a regular file in it and SUBDIR a directory in
 * it (names relative to DIR).
 *
 * First the reuse: DIR is opened and an entry statted by its fd; the fd is
 * closed and FILE opened, which takes the same number, and a stat relative
 * to it must fail with ENOTDIR; then it is closed and SUBDIR opened on the
 * number, and a stat of "." by it must be SUBDIR's. Each answer is printed.
 * DIR is read to its end twice, with an lseek to 0 between (both reads
 * must count the same entries), and once more at the end with a buffer
 * past user memory (Linux answers 0 there: nothing is written).
 *
 * Then the walk, as GNU du walks (fts): each directory is opened with
 * openat by its parent's fd, asked fcntl F_GETFL and F_SETFD, dupped with
 * F_DUPFD_CLOEXEC, read with getdents64 through the first fd, which is
 * then closed, and each entry is statted by the dup (fstatat,
 * AT_SYMLINK_NOFOLLOW), with an fcntl F_GETFD of the dup between every two
 * stats. It prints the number of directories, files and other entries,
 * the sum of the files' sizes and of every entry's link count, and a sum
 * over the entries of their name's bytes times their size plus one: the
 * output holds nothing that differs between two runs on the same files,
 * so it is the same natively and under vmrun. A failed check prints
 * "FAILED: ..." on stderr and exits 1. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

struct totals {
    unsigned long dirs, files, others, links, stats;
    unsigned long long bytes, names;
};

static unsigned long long name_sum(const char *name, long long size)
{
    unsigned long long s = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        s += *p;
    return s * (unsigned long long)(size + 1);
}

/* Walk the directory `name` relative to `parent` (a directory fd). */
static void walk(int parent, const char *name, struct totals *t, int depth)
{
    CHECK(depth < 64, "too deep at %s", name);
    int fd = openat(parent, name, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
    CHECK(fd >= 0, "openat %s: %s", name, strerror(errno));
    CHECK(fcntl(fd, F_GETFL) >= 0, "F_GETFL: %s", strerror(errno));
    CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0, "F_SETFD: %s", strerror(errno));
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    CHECK(dup > fd, "F_DUPFD_CLOEXEC: %d %s", dup, strerror(errno));
    /* Every name first (the walk below opens more directories). */
    static char buf[32768];
    char *names = NULL;
    size_t used = 0, room = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        CHECK(n >= 0, "getdents64 %s: %s", name, strerror(errno));
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
                continue;
            size_t len = strlen(d->d_name) + 1;
            if (used + len > room) {
                room = (room + len) * 2;
                names = realloc(names, room);
                CHECK(names != NULL, "out of memory");
            }
            memcpy(names + used, d->d_name, len);
            used += len;
        }
    }
    CHECK(close(fd) == 0, "close: %s", strerror(errno));
    for (size_t at = 0; at < used; at += strlen(names + at) + 1) {
        const char *entry = names + at;
        struct stat st;
        CHECK(fstatat(dup, entry, &st, AT_SYMLINK_NOFOLLOW) == 0, "fstatat %s/%s: %s", name, entry,
              strerror(errno));
        CHECK(fcntl(dup, F_GETFD) == FD_CLOEXEC, "F_GETFD of the dup");
        t->stats++;
        t->links += st.st_nlink;
        t->names += name_sum(entry, S_ISREG(st.st_mode) ? st.st_size : 0);
        if (S_ISDIR(st.st_mode)) {
            t->dirs++;
            walk(dup, entry, t, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            t->files++;
            t->bytes += (unsigned long long)st.st_size;
        } else {
            t->others++;
        }
    }
    free(names);
    CHECK(close(dup) == 0, "close the dup: %s", strerror(errno));
}

/* An fd that is the lowest free number: the one closed just before. */
static void reuse(const char *dir, const char *file, const char *subdir)
{
    struct stat st, sub;
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(d >= 0, "open %s: %s", dir, strerror(errno));
    CHECK(fstatat(d, file, &st, AT_SYMLINK_NOFOLLOW) == 0, "fstatat %s: %s", file, strerror(errno));
    CHECK(fstatat(d, subdir, &sub, AT_SYMLINK_NOFOLLOW) == 0, "fstatat %s: %s", subdir, strerror(errno));
    printf("dir fd: %s is a file of %lld bytes\n", file, (long long)st.st_size);
    CHECK(close(d) == 0, "close: %s", strerror(errno));

    int f = openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(f == d, "the directory again on fd %d, not %d", f, d);
    int file_fd = openat(f, file, O_RDONLY | O_CLOEXEC);
    CHECK(file_fd >= 0, "openat %s: %s", file, strerror(errno));
    CHECK(close(f) == 0, "close: %s", strerror(errno));
    /* The file on the directory's old number. */
    int g = fcntl(file_fd, F_DUPFD_CLOEXEC, 0);
    CHECK(g == d, "the file's dup on fd %d, not %d", g, d);
    errno = 0;
    int r = fstatat(g, file, &st, AT_SYMLINK_NOFOLLOW);
    printf("file on the same fd: stat of %s by it: %s\n", file, r == 0 ? "found" : strerror(errno));
    r = fstatat(g, "", &st, AT_EMPTY_PATH);
    printf("file on the same fd: its own size %lld\n", r == 0 ? (long long)st.st_size : -1LL);
    CHECK(close(g) == 0 && close(file_fd) == 0, "close: %s", strerror(errno));

    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, subdir);
    int s = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(s == d, "the subdirectory on fd %d, not %d", s, d);
    r = fstatat(s, ".", &st, AT_SYMLINK_NOFOLLOW);
    CHECK(r == 0, "fstatat .: %s", strerror(errno));
    printf("subdirectory on the same fd: . is %s\n", st.st_ino == sub.st_ino ? "the subdirectory" : "ANOTHER");
    errno = 0;
    r = fstatat(s, file, &st, AT_SYMLINK_NOFOLLOW);
    printf("subdirectory on the same fd: stat of %s by it: %s\n", file, r == 0 ? "found" : strerror(errno));
    CHECK(close(s) == 0, "close: %s", strerror(errno));
}

/* Entries getdents64 gives from where `fd` is to the end. */
static long count_entries(int fd)
{
    static char buf[4096];
    long entries = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        CHECK(n >= 0, "getdents64: %s", strerror(errno));
        if (n == 0)
            return entries;
        for (long off = 0; off < n; off += ((struct dirent64 *)(buf + off))->d_reclen)
            entries++;
    }
}

static void reread(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s: %s", dir, strerror(errno));
    long first = count_entries(fd);
    CHECK(syscall(SYS_getdents64, fd, (void *)0, 4096) == 0 || errno == EFAULT, "a read at the end");
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek: %s", strerror(errno));
    long again = count_entries(fd);
    errno = 0;
    long r = syscall(SYS_getdents64, fd, (void *)0xffff800000000000UL, 4096);
    printf("read to the end: %ld entries, after lseek 0: %ld; at the end into a kernel address: %ld %s\n",
           first, again, r, r < 0 ? strerror(errno) : "");
    close(fd);
}

int main(int argc, char **argv)
{
    CHECK(argc == 4, "usage: walk_tree DIR FILE SUBDIR");
    reuse(argv[1], argv[2], argv[3]);
    reread(argv[1]);
    struct totals t = {0};
    walk(AT_FDCWD, argv[1], &t, 0);
    printf("walk: %lu directories, %lu files, %lu others, %llu bytes, %lu links, names %llu, %lu stats\n",
           t.dirs, t.files, t.others, t.bytes, t.links, t.names, t.stats);
    return 0;
}

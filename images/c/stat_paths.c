/* stat_paths: the stat family on absolute paths, as Python's imports and
 * a shell's PATH search make it.
 *
 *   stat_paths [-n COUNT] PATH...
 *
 * For each absolute PATH it prints one line with what stat(), lstat(),
 * statx() and readlink() say (the result or errno, and for a found object
 * its type and permission bits, link count, owner, size, inode and
 * modification time, or the link's text), and whether each answer is byte
 * for byte the one the same call gives for the path relative to an fd of
 * the root directory (fstatat, statx and readlinkat with a dirfd), which
 * takes another way through the kernel: "same" or "DIFFERENT", then what
 * access() says for R_OK and X_OK (with faccessat and faccessat2 by the
 * dirfd, "same" or "DIFFERENT"); and a line "host PATH: ..." with what
 * lgetxattr(), getxattr() and access(W_OK) say (the host's file system
 * and vmrun's view of it decide those, so a test may leave these lines
 * out). Then, from the root directory, the same calls of each PATH
 * relative to it ("relative ... same"). Then it stats the first PATH
 * COUNT more times (default 100) and checks that every answer is the
 * first one, and that each of a few bad calls fails as Linux makes it
 * fail. The output holds nothing that differs between two runs on the
 * same files, so it is the same natively and under vmrun. A failed check
 * prints "FAILED: ..." on stderr and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"

static const char *err_name(int e)
{
    switch (e) {
    case 0: return "0";
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EACCES: return "EACCES";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ENODATA: return "ENODATA";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EROFS: return "EROFS";
    default: return "other";
    }
}

/* stat (follow) or lstat of `path`: its errno (0 if found) into *st. */
static int do_stat(const char *path, struct stat *st, int follow)
{
    memset(st, 0xa5, sizeof *st);
    int r = follow ? stat(path, st) : lstat(path, st);
    return r == 0 ? 0 : errno;
}

static int do_statx(int dirfd, const char *path, int flags, struct statx *stx)
{
    memset(stx, 0xa5, sizeof *stx);
    long r = syscall(SYS_statx, dirfd, path, flags, STATX_BASIC_STATS, stx);
    return r == 0 ? 0 : errno;
}

static void print_stat(const char *what, int e, const struct stat *st)
{
    if (e != 0) {
        printf(" %s=%s", what, err_name(e));
        return;
    }
    printf(" %s=%o/%lu/%u:%u/%lld/%llu/%lld", what, st->st_mode, (unsigned long)st->st_nlink,
           st->st_uid, st->st_gid, (long long)st->st_size, (unsigned long long)st->st_ino,
           (long long)st->st_mtime);
}

static void one_path(const char *path)
{
    struct stat a, b;
    struct statx x, y;
    const char *base = path[1] ? path + 1 : ".";
    int dir = open("/", O_PATH | O_DIRECTORY);
    CHECK(dir >= 0, "open /: %s", strerror(errno));
    CHECK(path[0] == '/', "not absolute: %s", path);
    printf("%s:", path);
    for (int follow = 1; follow >= 0; follow--) {
        int e = do_stat(path, &a, follow);
        memset(&b, 0xa5, sizeof b);
        int r = fstatat(dir, base, &b, follow ? 0 : AT_SYMLINK_NOFOLLOW);
        int e2 = r == 0 ? 0 : errno;
        print_stat(follow ? "stat" : "lstat", e, &a);
        printf(" %s", e == e2 && (e != 0 || memcmp(&a, &b, sizeof a) == 0) ? "same" : "DIFFERENT");
        int flags = follow ? 0 : AT_SYMLINK_NOFOLLOW;
        e = do_statx(AT_FDCWD, path, flags, &x);
        e2 = do_statx(dir, base, flags, &y);
        if (e == 0)
            printf(" statx=%o/%llu", x.stx_mode, (unsigned long long)x.stx_size);
        else
            printf(" statx=%s", err_name(e));
        printf(" %s", e == e2 && (e != 0 || memcmp(&x, &y, sizeof x) == 0) ? "same" : "DIFFERENT");
    }
    char l1[300], l2[300];
    memset(l1, 0, sizeof l1);
    memset(l2, 0, sizeof l2);
    ssize_t n1 = readlink(path, l1, sizeof l1 - 1);
    int e1 = n1 < 0 ? errno : 0;
    ssize_t n2 = readlinkat(dir, base, l2, sizeof l2 - 1);
    int e2 = n2 < 0 ? errno : 0;
    if (n1 >= 0)
        printf(" readlink=%zd:%s", n1, l1);
    else
        printf(" readlink=%s", err_name(e1));
    printf(" %s", n1 == n2 && e1 == e2 && memcmp(l1, l2, sizeof l1) == 0 ? "same" : "DIFFERENT");
    int a1 = access(path, R_OK) == 0 ? 0 : errno;
    int a2 = faccessat(dir, base, R_OK, 0) == 0 ? 0 : errno;
    int a3 = access(path, X_OK) == 0 ? 0 : errno;
    long r4 = syscall(SYS_faccessat2, dir, base, X_OK, AT_SYMLINK_NOFOLLOW | AT_EACCESS);
    int a4 = r4 == 0 ? 0 : errno;
    int a5 = syscall(SYS_faccessat2, AT_FDCWD, path, X_OK, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
    printf(" access(R_OK)=%s %s access(X_OK)=%s nofollow=%s %s\n", err_name(a1),
           a1 == a2 ? "same" : "DIFFERENT", err_name(a3), err_name(a4),
           a4 == a5 ? "same" : "DIFFERENT");
    close(dir);
    char value[64];
    ssize_t x1 = lgetxattr(path, "security.selinux", value, sizeof value);
    int xe1 = x1 < 0 ? errno : 0;
    ssize_t x2 = getxattr(path, "system.posix_acl_access", NULL, 0);
    int xe2 = x2 < 0 ? errno : 0;
    int w = access(path, W_OK) == 0 ? 0 : errno;
    printf("host %s: lgetxattr=%s getxattr=%s access(W_OK)=%s\n", path, err_name(xe1),
           err_name(xe2), err_name(w));
}

/* The calls of `path` (absolute) by its name relative to the working
 * directory, the root: each answer the absolute path's. */
static void relative(const char *path)
{
    struct stat a, b;
    struct statx x, y;
    const char *rel = path;
    while (*rel == '/')
        rel++;
    if (*rel == 0)
        rel = ".";
    int ea = do_stat(path, &a, 0), eb = do_stat(rel, &b, 0);
    int same = ea == eb && (ea != 0 || memcmp(&a, &b, sizeof a) == 0);
    ea = do_stat(path, &a, 1);
    eb = do_stat(rel, &b, 1);
    same = same && ea == eb && (ea != 0 || memcmp(&a, &b, sizeof a) == 0);
    ea = do_statx(AT_FDCWD, path, 0, &x);
    eb = do_statx(AT_FDCWD, rel, 0, &y);
    same = same && ea == eb && (ea != 0 || memcmp(&x, &y, sizeof x) == 0);
    char l1[300], l2[300];
    memset(l1, 0, sizeof l1);
    memset(l2, 0, sizeof l2);
    ssize_t n1 = readlink(path, l1, sizeof l1), n2 = readlink(rel, l2, sizeof l2);
    same = same && n1 == n2 && memcmp(l1, l2, sizeof l1) == 0;
    printf("relative %s: %s\n", rel, same ? "same" : "DIFFERENT");
}

int main(int argc, char **argv)
{
    long count = 100;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        count = strtol(argv[2], NULL, 10);
        first = 3;
    }
    CHECK(first < argc, "usage: stat_paths [-n COUNT] PATH...");
    for (int i = first; i < argc; i++)
        one_path(argv[i]);
    CHECK(chdir("/") == 0, "chdir /: %s", strerror(errno));
    for (int i = first; i < argc; i++)
        relative(argv[i]);

    /* The same stat again and again: each answer the first. */
    struct stat st0, st;
    int e0 = do_stat(argv[first], &st0, 1);
    for (long i = 0; i < count; i++) {
        int e = do_stat(argv[first], &st, 1);
        CHECK(e == e0 && (e != 0 || memcmp(&st, &st0, sizeof st) == 0),
              "stat %ld of %s differs", i, argv[first]);
    }
    printf("%ld more stats of %s: each the first\n", count, argv[first]);

    /* Bad calls. */
    char missing[64];
    snprintf(missing, sizeof missing, "%s", "/nonexistent-vmrun-path/x");
    struct stat *bad = (struct stat *)16;
    printf("stat(PATH, bad buffer) %s\n", err_name(stat(argv[first], bad) == 0 ? 0 : errno));
    printf("stat(missing, bad buffer) %s\n", err_name(stat(missing, bad) == 0 ? 0 : errno));
    printf("stat(bad path) %s\n", err_name(stat((const char *)16, &st) == 0 ? 0 : errno));
    printf("stat(\"\") %s\n", err_name(stat("", &st) == 0 ? 0 : errno));
    long r = syscall(SYS_newfstatat, AT_FDCWD, argv[first], &st, 0x2);
    printf("newfstatat(PATH, flag 0x2) %s\n", err_name(r == 0 ? 0 : errno));
    struct statx stx;
    r = syscall(SYS_statx, AT_FDCWD, argv[first], 0x6000, STATX_BASIC_STATS, &stx);
    printf("statx(PATH, both sync types) %s\n", err_name(r == 0 ? 0 : errno));
    r = syscall(SYS_statx, AT_FDCWD, argv[first], 0, 0x80000000u, &stx);
    printf("statx(PATH, reserved mask bit) %s\n", err_name(r == 0 ? 0 : errno));
    static char longpath[5000];
    longpath[0] = '/';
    memset(longpath + 1, 'a', 4200);
    printf("stat(4201 bytes) %s\n", err_name(stat(longpath, &st) == 0 ? 0 : errno));
    memset(longpath + 1, 'a', 300);
    longpath[301] = 0;
    printf("stat(a 300-byte name) %s\n", err_name(stat(longpath, &st) == 0 ? 0 : errno));
    char link[8];
    long got = readlink(argv[first], link, 0);
    printf("readlink(PATH, size 0) %s\n", err_name(got < 0 ? errno : 0));
    got = readlink(argv[first], (char *)16, 100);
    printf("readlink(PATH, bad buffer) %s\n", err_name(got < 0 ? errno : 0));
    printf("access(PATH, mode 8) %s\n", err_name(access(argv[first], 8) == 0 ? 0 : errno));
    got = syscall(SYS_faccessat2, AT_FDCWD, argv[first], R_OK, 0x4);
    printf("faccessat2(PATH, flag 0x4) %s\n", err_name(got < 0 ? errno : 0));
    return 0;
}

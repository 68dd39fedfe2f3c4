/* exec_test: execve and execveat from inside a program. Each mode is one
 * run that a test compares with the same run natively:
 *
 *   exec_test run TARGET [ARGS...]      execve(TARGET, [TARGET, ARGS...])
 *   exec_test fexec TARGET [ARGS...]    open TARGET, then execveat(fd, "",
 *                                       ..., AT_EMPTY_PATH) (fexecve)
 *   exec_test try PATH...               execve each PATH, which must fail:
 *                                       prints "PATH: ERRNO" and carries on
 *   exec_test args [ARGS...]            prints its argv and exits 0 (the
 *                                       target of the exec tests)
 *   exec_test cloexec SELF              opens /dev/null twice (one with
 *                                       O_CLOEXEC), sets SIGUSR1 caught and
 *                                       SIGUSR2 ignored, then execs
 *                                       `SELF after FD1 FD2`
 *   exec_test after FD1 FD2             prints which fds are open and the
 *                                       dispositions of SIGUSR1 and SIGUSR2
 *   exec_test loop N SELF               execs itself N times with N counting
 *                                       down, then prints "done after N
 *                                       execs" and exits 0
 *   exec_test strings SELF              execs `SELF sums ...` in forked
 *                                       children with argv and envp of many
 *                                       strings across pages, strings on
 *                                       pages never touched, on a PROT_NONE
 *                                       page, in the kernel's half of the
 *                                       address space, the longest string Linux
 *                                       takes and one byte more, and more
 *                                       than its limit; prints what each
 *                                       child printed or the exec's errno
 *   exec_test sums [ARGS...]            prints argc, envc, and each
 *                                       string's length and checksum
 *
 * Only the environment the caller gave is passed on. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

static const char *errno_name(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case ENOEXEC: return "ENOEXEC";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ELOOP: return "ELOOP";
    case E2BIG: return "E2BIG";
    case ETXTBSY: return "ETXTBSY";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case ELIBBAD: return "ELIBBAD";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    default: return "(other)";
    }
}

/* execve(target, [target, args...]); returns only on failure. */
static int run(char **argv)
{
    execve(argv[0], argv, environ);
    int e = errno;
    printf("execve %s failed: %s\n", argv[0], errno_name(e));
    return 1;
}

static int fexec(char **argv)
{
    int fd = open(argv[0], O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s: %s", argv[0], strerror(errno));
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    int e = errno;
    printf("execveat %s failed: %s\n", argv[0], errno_name(e));
    return 1;
}

static int try(int n, char **paths)
{
    for (int i = 0; i < n; i++) {
        char *argv[] = {paths[i], "arg", NULL};
        errno = 0;
        long r = syscall(SYS_execve, paths[i], argv, environ);
        printf("%s: %ld %s\n", paths[i], r, errno_name(errno));
        fflush(stdout);
    }
    printf("still running after %d failed execs\n", n);
    return 0;
}

static int args(int argc, char **argv)
{
    printf("argc %d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d] %s\n", i, argv[i]);
    return 0;
}

static void on_usr1(int sig)
{
    (void)sig;
}

static int cloexec(const char *self)
{
    int keep = open("/dev/null", O_RDONLY);
    int lose = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(keep >= 0 && lose >= 0, "open /dev/null: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    sa.sa_handler = SIG_IGN;
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", keep);
    snprintf(b, sizeof b, "%d", lose);
    char *argv[] = {(char *)self, "after", a, b, NULL};
    return run(argv);
}

static const char *disposition(int sig)
{
    struct sigaction sa;
    CHECK(sigaction(sig, NULL, &sa) == 0, "sigaction: %s", strerror(errno));
    if (sa.sa_handler == SIG_DFL)
        return "default";
    if (sa.sa_handler == SIG_IGN)
        return "ignored";
    return "caught";
}

static int after(char **fds)
{
    for (int i = 0; i < 2; i++) {
        int fd = atoi(fds[i]);
        int flags = fcntl(fd, F_GETFD);
        printf("fd %d: %s\n", fd, flags >= 0 ? "open" : errno_name(errno));
    }
    printf("SIGUSR1: %s\nSIGUSR2: %s\n", disposition(SIGUSR1), disposition(SIGUSR2));
    return 0;
}

static int loop(const char *count, const char *self)
{
    long n = atol(count);
    if (n <= 0) {
        printf("done after %s execs\n", getenv("EXEC_LOOP_TOTAL") ? getenv("EXEC_LOOP_TOTAL") : "?");
        return 0;
    }
    char next[32];
    snprintf(next, sizeof next, "%ld", n - 1);
    char *argv[] = {(char *)self, "loop", next, (char *)self, NULL};
    return run(argv);
}

/* A string's FNV-1a checksum. */
static unsigned fnv(const char *p)
{
    unsigned h = 2166136261u;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static int sums(int argc, char **argv)
{
    int envc = 0;
    while (environ[envc])
        envc++;
    printf("argc %d envc %d\n", argc, envc);
    for (int i = 0; i < argc; i++)
        printf(" a%d %zu %08x", i, strlen(argv[i]), fnv(argv[i]));
    for (int i = 0; i < envc; i++)
        printf(" e%d %zu %08x", i, strlen(environ[i]), fnv(environ[i]));
    printf("\n");
    return 0;
}

/* execve(argv[0], argv, envp) in a child; prints the errno of a failed
 * exec (the child's output otherwise), then the child's status. */
static void spawn(const char *what, char **argv, char **envp)
{
    printf("%s: ", what);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        syscall(SYS_execve, argv[0], argv, envp);
        printf("%s\n", errno_name(errno));
        fflush(stdout);
        _exit(7);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    printf("status %d\n", WEXITSTATUS(status));
    fflush(stdout);
}

/* A string of n copies of c (malloc'd). */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    CHECK(s != NULL, "malloc");
    memset(s, c, n);
    s[n] = 0;
    return s;
}

static int strings(char *self)
{
    /* Linux's limit on the strings is a quarter of the stack limit. */
    struct rlimit rl = {8 << 20, 8 << 20};
    CHECK(setrlimit(RLIMIT_STACK, &rl) == 0, "setrlimit: %s", strerror(errno));
    long page = sysconf(_SC_PAGESIZE);
    char *sums_arg = "sums";

    /* Many strings of many lengths, end to end in one buffer, so that
     * some cross pages; argv in the middle of a page, envp across one. */
    char *text = malloc(64 << 10);
    char **arrays = malloc(page * 4);
    CHECK(text && arrays, "malloc");
    char **argv = (char **)((char *)arrays + page / 2);
    char **envp = (char **)((char *)arrays + 2 * page - 40 * sizeof(char *));
    char *at = text;
    argv[0] = self;
    argv[1] = sums_arg;
    for (int i = 2; i < 40; i++) {
        argv[i] = at;
        at += sprintf(at, "arg%d-%s", i, i % 5 ? "x" : "") + 1;
    }
    argv[40] = NULL;
    for (int i = 0; i < 300; i++) {
        envp[i] = at;
        at += sprintf(at, "V%03d=", i) + 1;
        memset(at - 1, 'a' + i % 26, (i * 37) % 200);
        at += (i * 37) % 200;
        *at++ = 0;
    }
    envp[300] = NULL;
    spawn("many", argv, envp);

    /* Strings on pages nobody touched yet: an anonymous page (zeros: empty
     * strings) and a page of this program's own file (its first bytes). */
    char *fresh = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int fd = open(self, O_RDONLY);
    char *file = mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(fresh != MAP_FAILED && file != MAP_FAILED, "mmap: %s", strerror(errno));
    char *untouched[] = {self, sums_arg, fresh + 100, file + 1, NULL};
    char *env1[] = {"A=1", NULL};
    spawn("untouched", untouched, env1);
    char *late_env[] = {"B=2", fresh + page + 8, NULL};
    spawn("untouched env", untouched, late_env);

    /* A string on a PROT_NONE page, and the array on one. */
    char *none = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(none != MAP_FAILED, "mmap: %s", strerror(errno));
    char *bad[] = {self, sums_arg, none, NULL};
    spawn("prot-none string", bad, env1);
    spawn("prot-none array", untouched, (char **)none);
    /* A string in the kernel's half: the page vmrun maps there for the
     * program's system calls, the vsyscall page. */
    char *high[] = {self, sums_arg, (char *)0xffffffffff5ff000ul, NULL};
    spawn("kernel-half string", high, env1);
    high[2] = (char *)0xffffffffff600000ul;
    spawn("vsyscall string", high, env1);

    /* The longest string (128 KiB with its NUL) and one byte more. */
    char *longest = repeat('L', 32 * 4096 - 1);
    char *big[] = {self, sums_arg, longest, NULL};
    spawn("longest", big, env1);
    char *over = repeat('O', 32 * 4096);
    char *too_long[] = {self, sums_arg, over, NULL};
    spawn("too long", too_long, env1);

    /* Near 2 MiB in all, and past it. */
    char *many_big[24];
    many_big[0] = self;
    many_big[1] = sums_arg;
    for (int i = 2; i < 17; i++)
        many_big[i] = longest;
    many_big[17] = NULL;
    spawn("near the limit", many_big, env1);
    for (int i = 17; i < 23; i++)
        many_big[i] = longest;
    many_big[23] = NULL;
    spawn("past the limit", many_big, env1);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "strings") == 0)
        return strings(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "sums") == 0)
        return sums(argc, argv);
    if (argc >= 3 && strcmp(argv[1], "run") == 0)
        return run(argv + 2);
    if (argc >= 3 && strcmp(argv[1], "fexec") == 0)
        return fexec(argv + 2);
    if (argc >= 2 && strcmp(argv[1], "try") == 0)
        return try(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "args") == 0)
        return args(argc, argv);
    if (argc == 3 && strcmp(argv[1], "cloexec") == 0)
        return cloexec(argv[2]);
    if (argc == 4 && strcmp(argv[1], "after") == 0)
        return after(argv + 2);
    if (argc == 4 && strcmp(argv[1], "loop") == 0)
        return loop(argv[2], argv[3]);
    fprintf(stderr, "usage: exec_test run|fexec|try|args|cloexec|after|loop|strings|sums ...\n");
    return 2;
}

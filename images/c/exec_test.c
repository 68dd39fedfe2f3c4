/* exec_test: execve and execveat from inside a program. The guest has no
 * fork, so a successful exec is always the last thing a run does, and each
 * mode is one run that a test compares with the same run natively:
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
 *
 * Only the environment the caller gave is passed on. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

int main(int argc, char **argv)
{
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
    fprintf(stderr, "usage: exec_test run|fexec|try|args|cloexec|after|loop ...\n");
    return 2;
}

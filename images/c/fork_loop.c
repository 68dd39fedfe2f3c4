/* fork_loop: `fork_loop N` runs N rounds of fork, exit and wait4, checking
 * each child's status (round i exits with i & 0x7f), then writes "N rounds
 * of fork, exit and wait\n" and exits 0; a wrong round writes what went
 * wrong and exits 1. No libc, so that a round is little more than the fork
 * itself: a test runs a thousand of them and the guest's leak check at exit
 * covers every child's frames. */

#define SYS_write 1
#define SYS_fork 57
#define SYS_exit 60
#define SYS_wait4 61

static long raw_syscall4(long nr, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

static void put(const char *s, unsigned long len)
{
    raw_syscall4(SYS_write, 1, (long)s, (long)len, 0);
}

static unsigned long length(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

/* Writes n in decimal. */
static void put_number(unsigned long n)
{
    char digits[24];
    char *d = digits + sizeof digits;
    do {
        *--d = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    put(d, (unsigned long)(digits + sizeof digits - d));
}

__attribute__((noreturn)) static void exit_with(long code)
{
    for (;;)
        raw_syscall4(SYS_exit, code, 0, 0, 0);
}

__attribute__((noreturn)) static void fail(const char *what, unsigned long round, long value)
{
    put("fork_loop: ", 11);
    put(what, length(what));
    put(" in round ", 10);
    put_number(round);
    put(": ", 2);
    if (value < 0) {
        put("-", 1);
        value = -value;
    }
    put_number((unsigned long)value);
    put("\n", 1);
    exit_with(1);
}

__attribute__((noreturn, used)) void start_c(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    unsigned long n = 0;
    if (argc >= 2)
        for (const char *p = argv[1]; *p >= '0' && *p <= '9'; p++)
            n = n * 10 + (unsigned long)(*p - '0');
    for (unsigned long i = 0; i < n; i++) {
        long pid = raw_syscall4(SYS_fork, 0, 0, 0, 0);
        if (pid < 0)
            fail("fork failed", i, pid);
        if (pid == 0)
            exit_with((long)(i & 0x7f));
        int status = -1;
        long got = raw_syscall4(SYS_wait4, pid, (long)&status, 0, 0);
        if (got != pid)
            fail("wait4 returned", i, got);
        if (status != (int)((i & 0x7f) << 8))
            fail("wrong status", i, status);
    }
    put_number(n);
    put(" rounds of fork, exit and wait\n", 31);
    exit_with(0);
}

/* The process entry: pass the initial stack pointer (argc, argv, envp) to
 * C, keeping the stack 16-byte aligned across the call. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call start_c\n"
        "    hlt\n");

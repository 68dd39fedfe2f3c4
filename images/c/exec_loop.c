/* exec_loop: `exec_loop N` execs itself (through argv[0]) with N-1 until N
 * is 0, then writes "exec loop done\n" and exits 0. No libc, so that one
 * round is little more than the exec itself: a test runs a thousand of them
 * and checks that the guest's frame and page-table counts come back to
 * where they were. A failed execve exits with status 1. */

#define SYS_write 1
#define SYS_execve 59
#define SYS_exit 60

static long raw_syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

static const char done[] = "exec loop done\n";

__attribute__((noreturn, used)) void start_c(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    unsigned long n = 0;
    if (argc >= 2)
        for (const char *p = argv[1]; *p >= '0' && *p <= '9'; p++)
            n = n * 10 + (unsigned long)(*p - '0');
    if (n == 0) {
        raw_syscall3(SYS_write, 1, (long)done, sizeof done - 1);
        for (;;)
            raw_syscall3(SYS_exit, 0, 0, 0);
    }
    /* N-1 in decimal. */
    char digits[24];
    char *d = digits + sizeof digits - 1;
    *d = 0;
    n--;
    do {
        *--d = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    char *args[] = {argv[0], d, 0};
    raw_syscall3(SYS_execve, (long)argv[0], (long)args, (long)envp);
    for (;;)
        raw_syscall3(SYS_exit, 1, 0, 0);
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

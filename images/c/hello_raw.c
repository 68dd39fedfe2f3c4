/* hello_raw: the smallest possible guest program. No libc, no startup files:
 * _start is ours, and the only kernel services used are write(2) and exit(2)
 * through the raw `syscall` instruction.
 *
 * Built with -nostdlib -static -fno-pie -no-pie: a single ET_EXEC with no
 * dynamic section, no TLS and no relocations. */

#define SYS_write 1
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

static const char message[] = "hello, world\n";

__attribute__((noreturn, used)) void start_c(void)
{
    raw_syscall3(SYS_write, 1, (long)message, sizeof message - 1);
    for (;;)
        raw_syscall3(SYS_exit, 0, 0, 0);
}

/* The process entry: clear the frame pointer (end of the call chain, as the
 * ABI asks), keep the stack 16-byte aligned across the call, and go to C. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    and $-16, %rsp\n"
        "    call start_c\n"
        "    hlt\n");

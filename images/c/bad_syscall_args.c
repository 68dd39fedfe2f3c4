/* bad_syscall_args: the kernel must check every user pointer and reject bad
 * ones with EFAULT instead of crashing or reading kernel memory, and answer
 * unknown syscall numbers with ENOSYS. Prints one line per check and then
 * "all ok"; a failed check exits 1.
 *
 * Standard input must hold at least 16 bytes (a test pipes them in): the
 * read checks need data waiting, since a read at EOF never touches the
 * buffer. Raw syscall(2) is used so that no libc wrapper gets in the way. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "check.h"

#define KERNEL_HALF 0xffff888000000000UL
#define TASK_SIZE 0x7ffffffff000UL

static void expect_error(const char *what, long ret, int err, const char *name)
{
    CHECK(ret == -1 && errno == err, "%s: returned %ld, errno %d (%s), expected %s", what,
          ret, errno, strerror(errno), name);
    printf("%s: %s ok\n", what, name);
}

static void check_efault(void)
{
    expect_error("write from 0x1", syscall(SYS_write, 1, 0x1UL, 10), EFAULT, "EFAULT");
    expect_error("write from the kernel half", syscall(SYS_write, 1, KERNEL_HALF, 10),
                 EFAULT, "EFAULT");
    expect_error("write across the top of user space",
                 syscall(SYS_write, 1, TASK_SIZE - 5, 10), EFAULT, "EFAULT");
    expect_error("read into 0x1000", syscall(SYS_read, 0, 0x1000UL, 10), EFAULT, "EFAULT");
    expect_error("read into the kernel half", syscall(SYS_read, 0, KERNEL_HALF, 10),
                 EFAULT, "EFAULT");
    expect_error("read into read-only text", syscall(SYS_read, 0, (uintptr_t)&check_efault, 10),
                 EFAULT, "EFAULT");
    expect_error("uname(NULL)", syscall(SYS_uname, 0UL), EFAULT, "EFAULT");
}

static void check_other_errors(void)
{
    static const char byte = 'x';
    expect_error("write to fd -1", syscall(SYS_write, -1, &byte, 1), EBADF, "EBADF");
    expect_error("write to fd 1000", syscall(SYS_write, 1000, &byte, 1), EBADF, "EBADF");
    expect_error("getgroups of -1 groups", syscall(SYS_getgroups, -1, NULL), EINVAL, "EINVAL");
    unsigned int id = 7;
    expect_error("getresuid into 0x1", syscall(SYS_getresuid, &id, &id, 0x1UL), EFAULT,
                 "EFAULT");
    expect_error("getresgid into the kernel half",
                 syscall(SYS_getresgid, KERNEL_HALF, &id, &id), EFAULT, "EFAULT");
    expect_error("syscall 1000", syscall(1000), ENOSYS, "ENOSYS");
    expect_error("syscall -1", syscall(-1), ENOSYS, "ENOSYS");
}

/* SYSCALL clears the direction flag for the kernel (SFMASK), so a call made
 * with it set still gets its copies run forwards. */
static long call_with_df_set(long n, long a)
{
    long r;
    __asm__ volatile("std\n\tsyscall\n\tcld"
                     : "=a"(r)
                     : "a"(n), "D"(a)
                     : "rcx", "r11", "memory", "cc");
    return r;
}

static void check_direction_flag(void)
{
    struct utsname want, got;
    memset(&got, 0, sizeof got);
    CHECK(uname(&want) == 0, "uname: %s", strerror(errno));
    long r = call_with_df_set(SYS_uname, (long)&got);
    CHECK(r == 0 && memcmp(&want, &got, sizeof want) == 0,
          "uname with DF set: returned %ld, or its fields differ", r);
    printf("uname with DF set ok\n");
}

/* System call `nr` (rdi 0, rsi 32, rdx 0, r10 0x53053053: rseq's
   arguments) with known values in every register; out[0] gets rax, then
   rbx, rbp, rdi, rsi, rdx, r8, r9, r10, r12, r13, r14, r15. Where calls
   are not watched, vmrun's syscall trampoline answers rseq (ENOSYS: the
   guest kernel has none), getuid, getgid, geteuid and getegid (0) and
   brk(0) (the break) itself: every register but rax, rcx and r11 must come back as it went,
   as from the kernel. */
void syscall_probe(unsigned long *out, long nr);
__asm__(".text\n"
        ".globl syscall_probe\n"
        "syscall_probe:\n"
        "    push %rbx\n    push %rbp\n    push %r12\n    push %r13\n"
        "    push %r14\n    push %r15\n    push %rdi\n"
        "    mov %rsi, %rax\n"
        "    movabs $0x1111111111111111, %rbx\n"
        "    movabs $0x2222222222222222, %rbp\n"
        "    xor %edi, %edi\n"
        "    mov $32, %esi\n"
        "    xor %edx, %edx\n"
        "    movabs $0x8888888888888888, %r8\n"
        "    movabs $0x9999999999999999, %r9\n"
        "    mov $0x53053053, %r10d\n"
        "    movabs $0xcccccccccccccccc, %r12\n"
        "    movabs $0xdddddddddddddddd, %r13\n"
        "    movabs $0xeeeeeeeeeeeeeeee, %r14\n"
        "    movabs $0x7777777777777777, %r15\n"
        "    syscall\n"
        "    mov (%rsp), %rcx\n"
        "    mov %rax, 0(%rcx)\n    mov %rbx, 8(%rcx)\n    mov %rbp, 16(%rcx)\n"
        "    mov %rdi, 24(%rcx)\n   mov %rsi, 32(%rcx)\n   mov %rdx, 40(%rcx)\n"
        "    mov %r8, 48(%rcx)\n    mov %r9, 56(%rcx)\n    mov %r10, 64(%rcx)\n"
        "    mov %r12, 72(%rcx)\n   mov %r13, 80(%rcx)\n   mov %r14, 88(%rcx)\n"
        "    mov %r15, 96(%rcx)\n"
        "    pop %rdi\n    pop %r15\n    pop %r14\n    pop %r13\n"
        "    pop %r12\n    pop %rbp\n    pop %rbx\n"
        "    ret\n");

/* `nr` by syscall_probe: its result (checked by the caller) with every
   other register checked here. */
static long probe(const char *name, long nr)
{
    static const unsigned long want[13] = {
        0, 0x1111111111111111, 0x2222222222222222, 0, 32, 0,
        0x8888888888888888, 0x9999999999999999, 0x53053053,
        0xcccccccccccccccc, 0xdddddddddddddddd, 0xeeeeeeeeeeeeeeee,
        0x7777777777777777,
    };
    unsigned long got[13];
    syscall_probe(got, nr);
    for (int i = 1; i < 13; i++)
        CHECK(got[i] == want[i], "%s changed register %d: %#lx, was %#lx", name, i, got[i],
              want[i]);
    return (long)got[0];
}

static void check_registers_kept(void)
{
    long r = probe("rseq", SYS_rseq);
    CHECK(r < 0 && r > -4096, "rseq(NULL, 32, 0, sig) returned %ld", r);
    CHECK(probe("getuid", SYS_getuid) == (long)getuid(), "getuid");
    CHECK(probe("getgid", SYS_getgid) == (long)getgid(), "getgid");
    CHECK(probe("geteuid", SYS_geteuid) == (long)geteuid(), "geteuid");
    CHECK(probe("getegid", SYS_getegid) == (long)getegid(), "getegid");
    CHECK(probe("brk", SYS_brk) == (long)sbrk(0), "brk(0)");
    printf("rseq, getuid, getgid, geteuid, getegid, brk(0) keep every register but rax, "
           "rcx and r11 ok\n");
}

int main(void)
{
    check_efault();
    check_other_errors();
    check_direction_flag();
    check_registers_kept();
    printf("all ok\n");
    return 0;
}

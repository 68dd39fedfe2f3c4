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

int main(void)
{
    check_efault();
    check_other_errors();
    check_direction_flag();
    printf("all ok\n");
    return 0;
}

/* brk_test: the program break through the raw brk syscall, with Linux's
 * semantics: brk(0) reads the break; growing returns the new break and the
 * new memory is zero and writable; shrinking returns the lower break; pages
 * given back and grown again read as zero; a request below the start of the
 * heap, beyond user space or by more than all of RAM at once (a terabyte)
 * is refused by returning the unchanged break; a forked child starts with
 * its parent's break and moves only its own. brk(0) is read after each
 * change (vmrun's syscall trampoline answers it from the break the kernel
 * publishes).
 * Prints "brk ok" and exits 0; any failed check exits 1 saying what. */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define GROWTH ((1UL << 20) + 12345)
#define KERNEL_HALF 0xffff888000000000UL

static uintptr_t sys_brk(uintptr_t addr)
{
    return (uintptr_t)syscall(SYS_brk, addr);
}

static uintptr_t page_up(uintptr_t addr)
{
    return (addr + PAGE_SIZE_4K - 1) & ~(PAGE_SIZE_4K - 1);
}

static void expect_zero(uintptr_t from, uintptr_t to)
{
    for (volatile unsigned char *p = (void *)from; p < (unsigned char *)to; p++)
        CHECK(*p == 0, "byte at %p is %#x, not zero", (void *)p, *p);
}

static void fill_and_verify(uintptr_t from, uintptr_t to)
{
    for (volatile unsigned char *p = (void *)from; p < (unsigned char *)to; p++)
        *p = (unsigned char)((uintptr_t)p * 7 + 1);
    for (volatile unsigned char *p = (void *)from; p < (unsigned char *)to; p++)
        CHECK(*p == (unsigned char)((uintptr_t)p * 7 + 1), "byte at %p lost its write",
              (void *)p);
}

static void expect_brk(uintptr_t request, uintptr_t expected, const char *what)
{
    uintptr_t got = sys_brk(request);
    CHECK(got == expected, "%s: brk(%#lx) returned %#lx, expected %#lx", what,
          (unsigned long)request, (unsigned long)got, (unsigned long)expected);
}

int main(void)
{
    /* No stdio before the break is put back: glibc's malloc may use brk. */
    uintptr_t start = sys_brk(0);
    uintptr_t top = start + GROWTH;
    uintptr_t low = start + 3 * PAGE_SIZE_4K + 7;

    CHECK(start != 0 && start != (uintptr_t)-1, "brk(0) returned %#lx", (unsigned long)start);
    expect_brk(top, top, "grow");
    expect_zero(page_up(start), top);
    fill_and_verify(start, top);
    expect_brk(0, top, "read after grow");
    expect_brk(low, low, "shrink");
    expect_brk(0, low, "read after shrink");
    expect_brk(top, top, "grow again");
    expect_zero(page_up(low), top);
    fill_and_verify(low, top);
    expect_brk(1, top, "below the heap start");
    expect_brk(KERNEL_HALF, top, "into the kernel half");
    /* More than all of RAM in one step: Linux's overcommit heuristic. */
    expect_brk(top + (1UL << 40), top, "a terabyte more");
    expect_brk(0, top, "read after refused requests");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        uintptr_t mine = top + 3 * PAGE_SIZE_4K;
        if (sys_brk(0) != top)
            _exit(2);
        if (sys_brk(mine) != mine || sys_brk(0) != mine)
            _exit(3);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's breaks: status %#x",
          status);
    expect_brk(0, top, "the parent's, after its child moved its own");
    expect_brk(start, start, "give everything back");
    printf("brk ok\n");
    return 0;
}

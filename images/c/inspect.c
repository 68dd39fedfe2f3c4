/* inspect: shows what the kernel's execve gave the program, and checks what
 * can be checked without a reference.
 *
 * Self-checks (failure: "FAILED: ..." on stderr, exit 1):
 *   - initialised .data holds its values; a 3 MiB .bss is all zero and writable;
 *   - the entry stack pointer (just below argv) is 16-byte aligned, argc sits
 *     there, envp follows argv's NULL; main's frame is 16-byte aligned;
 *   - AT_ENTRY is _start, AT_PHDR is where the loaded ELF header says;
 *   - AT_RANDOM points at 16 readable bytes.
 *
 * Output is stable, so a test can compare a vmrun run with a native run of
 * the same binary. Lines starting with "varies:" hold values that may
 * legitimately differ (ids, hardware capabilities, vDSO): filter them. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

#include "check.h"

extern char _start[];
extern const ElfW(Ehdr) __ehdr_start;

static volatile int data_int = 0x12345678;
static volatile long data_longs[4] = {1, -2, 3, 0x7fffffffffffffffL};
static char data_string[] = "initialised data";

#define BSS_SIZE (3UL << 20)
static volatile unsigned char big_bss[BSS_SIZE];

static void check_data(void)
{
    CHECK(data_int == 0x12345678, "data_int = %#x", data_int);
    CHECK(data_longs[1] == -2 && data_longs[3] == 0x7fffffffffffffffL,
          "data_longs = %ld %ld", data_longs[1], data_longs[3]);
    CHECK(strcmp(data_string, "initialised data") == 0, "data_string = %s",
          data_string);
}

static void check_bss(void)
{
    for (size_t i = 0; i < BSS_SIZE; i++)
        CHECK(big_bss[i] == 0, "big_bss[%zu] = %#x", i, big_bss[i]);
    for (size_t i = 0; i < BSS_SIZE; i += 512)
        big_bss[i] = (unsigned char)(i / 512 + 1);
    for (size_t i = 0; i < BSS_SIZE; i += 512)
        CHECK(big_bss[i] == (unsigned char)(i / 512 + 1),
              "big_bss[%zu] lost its write", i);
}

static void check_stack(int argc, char **argv, char **envp)
{
    uintptr_t entry_sp = (uintptr_t)argv - sizeof(long);
    CHECK(entry_sp % 16 == 0, "entry stack pointer %#lx", (unsigned long)entry_sp);
    CHECK(*(long *)entry_sp == argc, "argc on the stack %ld, main got %d",
          *(long *)entry_sp, argc);
    CHECK(argv[argc] == NULL, "argv[argc] is not NULL");
    CHECK(envp == argv + argc + 1, "envp %p, argv %p", (void *)envp, (void *)argv);
    uintptr_t frame = (uintptr_t)__builtin_frame_address(0);
    CHECK(frame % 16 == 0, "main's frame %#lx", (unsigned long)frame);
}

static void check_auxv(void)
{
    CHECK(getauxval(AT_ENTRY) == (uintptr_t)_start, "AT_ENTRY %#lx, _start %p",
          getauxval(AT_ENTRY), (void *)_start);
    uintptr_t phdr = (uintptr_t)&__ehdr_start + __ehdr_start.e_phoff;
    CHECK(getauxval(AT_PHDR) == phdr, "AT_PHDR %#lx, expected %#lx",
          getauxval(AT_PHDR), (unsigned long)phdr);
    CHECK(getauxval(AT_PHNUM) == __ehdr_start.e_phnum, "AT_PHNUM %lu, e_phnum %u",
          getauxval(AT_PHNUM), __ehdr_start.e_phnum);
    const volatile unsigned char *random = (void *)getauxval(AT_RANDOM);
    CHECK(random != NULL, "AT_RANDOM missing");
    unsigned sum = 0;
    for (int i = 0; i < 16; i++)
        sum += random[i];
    (void)sum;
}

static void print_args(int argc, char **argv, char **envp)
{
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=\"%s\"\n", i, argv[i]);
    int n = 0;
    for (; envp[n]; n++)
        printf("envp[%d]=\"%s\"\n", n, envp[n]);
    printf("envc=%d\n", n);
}

/* "present" when the kernel passed the entry at all (even with value 0). */
static const char *presence(unsigned long type)
{
    errno = 0;
    unsigned long value = getauxval(type);
    return value != 0 || errno != ENOENT ? "present" : "missing";
}

static const char *string_aux(unsigned long type)
{
    const char *s = (const char *)getauxval(type);
    return s ? s : "(null)";
}

static void print_auxv(void)
{
    printf("AT_PAGESZ=%lu\n", getauxval(AT_PAGESZ));
    printf("AT_PHENT=%lu\n", getauxval(AT_PHENT));
    printf("AT_PHNUM=%lu\n", getauxval(AT_PHNUM));
    printf("AT_ENTRY is _start: %s\n", getauxval(AT_ENTRY) == (uintptr_t)_start ? "yes" : "no");
    printf("AT_BASE=%#lx\n", getauxval(AT_BASE));
    printf("AT_FLAGS=%#lx\n", getauxval(AT_FLAGS));
    printf("AT_SECURE=%lu\n", getauxval(AT_SECURE));
    printf("AT_CLKTCK=%lu\n", getauxval(AT_CLKTCK));
    printf("AT_PLATFORM=\"%s\"\n", string_aux(AT_PLATFORM));
    printf("AT_EXECFN=\"%s\"\n", string_aux(AT_EXECFN));
    printf("AT_RANDOM: %s\n", getauxval(AT_RANDOM) ? "non-NULL" : "NULL");
    printf("AT_HWCAP nonzero: %s\n", getauxval(AT_HWCAP) ? "yes" : "no");
    printf("AT_MINSIGSTKSZ: %s\n", presence(AT_MINSIGSTKSZ));
    printf("varies: AT_UID=%lu AT_EUID=%lu\n", getauxval(AT_UID), getauxval(AT_EUID));
    printf("varies: AT_GID=%lu AT_EGID=%lu\n", getauxval(AT_GID), getauxval(AT_EGID));
    printf("varies: AT_HWCAP=%#lx AT_HWCAP2=%#lx\n", getauxval(AT_HWCAP), getauxval(AT_HWCAP2));
    printf("varies: AT_MINSIGSTKSZ=%lu\n", getauxval(AT_MINSIGSTKSZ));
    printf("varies: AT_SYSINFO_EHDR %s\n", presence(AT_SYSINFO_EHDR));
}

int main(int argc, char **argv, char **envp)
{
    check_stack(argc, argv, envp);
    check_data();
    check_bss();
    check_auxv();
    print_args(argc, argv, envp);
    print_auxv();
    printf("self-checks ok\n");
    return 0;
}

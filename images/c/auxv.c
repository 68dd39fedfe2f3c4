/* auxv: prints the auxiliary vector the kernel gave it, entry by entry in
 * the kernel's order, one "NAME value" line each (strings for AT_EXECFN
 * and AT_PLATFORM, hex for addresses), then what getauxval(3) answers for
 * entries Linux x86-64 may give. Built static and dynamic; a test compares
 * it with a native run under `setarch -R`. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

struct name {
    unsigned long type;
    const char *name;
    char kind; /* 'x' hex, 'd' decimal, 's' string */
};

static const struct name names[] = {
    {AT_IGNORE, "AT_IGNORE", 'd'},         {AT_EXECFD, "AT_EXECFD", 'd'},
    {AT_PHDR, "AT_PHDR", 'x'},             {AT_PHENT, "AT_PHENT", 'd'},
    {AT_PHNUM, "AT_PHNUM", 'd'},           {AT_PAGESZ, "AT_PAGESZ", 'd'},
    {AT_BASE, "AT_BASE", 'x'},             {AT_FLAGS, "AT_FLAGS", 'x'},
    {AT_ENTRY, "AT_ENTRY", 'x'},           {AT_NOTELF, "AT_NOTELF", 'd'},
    {AT_UID, "AT_UID", 'd'},               {AT_EUID, "AT_EUID", 'd'},
    {AT_GID, "AT_GID", 'd'},               {AT_EGID, "AT_EGID", 'd'},
    {AT_PLATFORM, "AT_PLATFORM", 's'},     {AT_HWCAP, "AT_HWCAP", 'x'},
    {AT_CLKTCK, "AT_CLKTCK", 'd'},         {AT_SECURE, "AT_SECURE", 'd'},
    {AT_BASE_PLATFORM, "AT_BASE_PLATFORM", 's'},
    {AT_RANDOM, "AT_RANDOM", 'x'},         {AT_HWCAP2, "AT_HWCAP2", 'x'},
    {27, "AT_RSEQ_FEATURE_SIZE", 'd'},     {28, "AT_RSEQ_ALIGN", 'd'},
    {29, "AT_HWCAP3", 'x'},                {30, "AT_HWCAP4", 'x'},
    {AT_EXECFN, "AT_EXECFN", 's'},         {AT_SYSINFO_EHDR, "AT_SYSINFO_EHDR", 'x'},
    {AT_MINSIGSTKSZ, "AT_MINSIGSTKSZ", 'd'},
};

#define NNAMES (sizeof names / sizeof names[0])

static void show(const char *how, unsigned long type, unsigned long value)
{
    for (size_t i = 0; i < NNAMES; i++) {
        if (names[i].type != type)
            continue;
        switch (names[i].kind) {
        case 's':
            printf("%s %s %s\n", how, names[i].name, value ? (const char *)value : "(null)");
            return;
        case 'x':
            printf("%s %s %#lx\n", how, names[i].name, value);
            return;
        default:
            printf("%s %s %lu\n", how, names[i].name, value);
            return;
        }
    }
    printf("%s AT_%lu %#lx\n", how, type, value);
}

int main(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    char **p = envp;
    while (*p)
        p++;
    for (Elf64_auxv_t *a = (Elf64_auxv_t *)(p + 1); a->a_type != AT_NULL; a++)
        show("vector", a->a_type, a->a_un.a_val);
    for (size_t i = 0; i < NNAMES; i++) {
        errno = 0;
        unsigned long v = getauxval(names[i].type);
        if (v == 0 && errno == ENOENT)
            printf("getauxval %s absent\n", names[i].name);
        else
            show("getauxval", names[i].type, v);
    }
    return 0;
}

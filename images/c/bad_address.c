/* bad_address: accesses to addresses no program may touch (the kernel half,
 * the hole below the direct map that some hypervisors keep, non-canonical
 * addresses, the top of user space) must end as a fault signal for the
 * program, exactly as on Linux, and never harm the kernel.
 *
 *   bad_address catch N   reads, writes and jumps to each address N times
 *                         with a SA_SIGINFO SIGSEGV handler and prints, per
 *                         address and access, the signal, si_code, si_addr,
 *                         trap number and error code the handler saw (one
 *                         line if all N agree)
 *   bad_address read ADDR reads ADDR without a handler: dies of SIGSEGV
 *   bad_address pasteof   maps its own file two pages past its end: the
 *                         last page reads zero after the file's bytes, a
 *                         write(2) from a page past the end is EFAULT, and
 *                         a touch there is SIGBUS (BUS_ADRERR) for its
 *                         handler; with "die", an unhandled SIGBUS
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <ucontext.h>
#include <unistd.h>

static const uint64_t addresses[] = {
    0xffff800000000000UL, /* first kernel-half address */
    0xffff800000001008UL, 0xffff808000000000UL, /* the hole below the direct map */
    0xffff888000000000UL, /* the direct map */
    0xffffffff80000000UL, /* the kernel image */
    0xfffffffffffff000UL, /* the last page */
    0x0000800000000000UL, /* the first non-canonical address */
    0x8000000000000000UL, /* non-canonical */
    0xffff7ffffffff000UL, /* the last non-canonical page */
    0x00007ffffffff000UL, /* the first page above user space */
};

struct seen {
    int signo, code;
    uint64_t addr, trapno, err;
};

static sigjmp_buf jump;
static struct seen seen;

static void on_segv(int signo, siginfo_t *info, void *context)
{
    ucontext_t *uc = context;
    seen.signo = signo;
    seen.code = info->si_code;
    seen.addr = (uint64_t)info->si_addr;
    seen.trapno = uc->uc_mcontext.gregs[REG_TRAPNO];
    seen.err = uc->uc_mcontext.gregs[REG_ERR];
    siglongjmp(jump, 1);
}

static void access_once(char how, uint64_t addr)
{
    if (how == 'r')
        (void)*(volatile uint64_t *)addr;
    else if (how == 'w')
        *(volatile uint64_t *)addr = 1;
    else
        ((void (*)(void))addr)();
}

/* One access; returns 0 if it did not fault. */
static int try_access(char how, uint64_t addr)
{
    memset(&seen, 0, sizeof seen);
    if (sigsetjmp(jump, 1) == 0) {
        access_once(how, addr);
        return 0;
    }
    return 1;
}

static void probe(char how, uint64_t addr, int times)
{
    struct seen first = {0};
    int differ = 0;
    for (int i = 0; i < times; i++) {
        if (!try_access(how, addr)) {
            printf("%c %#lx: no fault\n", how, (unsigned long)addr);
            return;
        }
        if (i == 0)
            first = seen;
        else if (memcmp(&first, &seen, sizeof seen) != 0)
            differ++;
    }
    printf("%c %#lx: signal %d code %#x addr %#lx trap %lu err %#lx%s\n", how,
           (unsigned long)addr, first.signo, first.code, (unsigned long)first.addr,
           (unsigned long)first.trapno, (unsigned long)first.err,
           differ ? " (later faults differ)" : "");
}

/* Maps argv[0] two pages past its end and touches what lies there. */
static int past_eof(const char *self, int die)
{
    int fd = open(self, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return 2;
    uint64_t end = ((uint64_t)st.st_size + 4095) & ~4095UL;
    char *p = mmap(NULL, end + 8192, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return 3;
    int zero = 1;
    for (uint64_t i = st.st_size; i < end; i++)
        zero &= p[i] == 0;
    printf("pasteof: the rest of the last page reads zero: %d\n", zero);
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return 4;
    long n = write(pipefd[1], p + end + 8, 16);
    printf("pasteof: write from a page past the end: %ld (%s)\n", n,
           n < 0 && errno == EFAULT ? "EFAULT" : "other");
    if (die) {
        fflush(stdout);
        return p[end + 8];
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
    for (uint64_t off = end; off < end + 8192; off += 4096 + 8) {
        if (!try_access('r', (uint64_t)(p + off)))
            printf("pasteof: +%#lx: no fault\n", (unsigned long)(off - end));
        else
            printf("pasteof: +%#lx: signal %d code %d at +%#lx trap %lu err %#lx\n",
                   (unsigned long)(off - end), seen.signo, seen.code,
                   (unsigned long)(seen.addr - (uint64_t)p - end), (unsigned long)seen.trapno,
                   (unsigned long)seen.err);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "pasteof") == 0)
        return past_eof(argv[0], argc == 3 && strcmp(argv[2], "die") == 0);
    if (argc == 3 && strcmp(argv[1], "catch") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigaction(SIGSEGV, &sa, NULL);
        int times = atoi(argv[2]);
        for (size_t i = 0; i < sizeof addresses / sizeof addresses[0]; i++)
            for (const char *how = "rwx"; *how; how++)
                probe(*how, addresses[i], times);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "read") == 0) {
        access_once('r', strtoull(argv[2], NULL, 0));
        return 0;
    }
    fprintf(stderr, "usage: bad_address catch N | read ADDR | pasteof [die]\n");
    return 2;
}

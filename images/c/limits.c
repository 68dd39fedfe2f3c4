/* limits MODE: resource limits on the address space, each mode printing
 * what a native run prints too.
 *   maxmaps  map one-page areas (alternating PROT_NONE and PROT_READ, so
 *            that none merge) until mmap fails; print the errno and how
 *            many areas the process then has (vm.max_map_count + 1 on
 *            Linux: mmap refuses only once the count is above it).
 *   as       setrlimit(RLIMIT_AS) to 64 MiB more than mapped now: a 128 MiB
 *            mmap fails with ENOMEM, a 16 MiB one works; getrlimit reads
 *            the limit back; a fork child and an exec'd copy see it too.
 *   data     setrlimit(RLIMIT_DATA) to 8 MiB more than the data now: brk
 *            past it fails, below it works; a private writable mmap past it
 *            fails, a read-only one of the same size works.
 *   stack    setrlimit(RLIMIT_STACK) to 1 MiB, then recurse 64 KiB a frame:
 *            the stack stops growing at the limit (SIGSEGV, status 139).
 *   show-as  print RLIMIT_AS's soft limit (what exec kept).
 *   map N [K] map N one-page areas that do not merge, then time K more
 *            (median TSC cycles per mmap). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Areas the process has: lines of /proc/self/maps but [vsyscall], which
 * Linux lists without it being an area of the process. */
static long count_areas(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL, "open /proc/self/maps: %s", strerror(errno));
    char line[512];
    long n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "[vsyscall]") == NULL)
            n++;
    fclose(f);
    return n;
}

/* Bytes of the areas the process has (its total_vm). */
static unsigned long mapped_bytes(int data_only)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL, "open /proc/self/maps: %s", strerror(errno));
    char line[512];
    unsigned long total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        char perms[5];
        if (strstr(line, "[vsyscall]") || sscanf(line, "%lx-%lx %4s", &s, &e, perms) != 3)
            continue;
        int data = perms[1] == 'w' && perms[3] == 'p' && strstr(line, "[stack]") == NULL;
        if (!data_only || data)
            total += e - s;
    }
    fclose(f);
    return total;
}

static int maxmaps(void)
{
    long before = count_areas();
    long made = 0;
    for (;;) {
        int prot = (made & 1) ? PROT_READ : PROT_NONE;
        void *p = mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        made++;
    }
    int e = errno;
    printf("mmap failed with %s after %ld areas\n", e == ENOMEM ? "ENOMEM" : strerror(e),
           before + made);
    return 0;
}

static void set_limit(int resource, rlim_t cur)
{
    struct rlimit r;
    CHECK(getrlimit(resource, &r) == 0, "getrlimit: %s", strerror(errno));
    r.rlim_cur = cur;
    CHECK(setrlimit(resource, &r) == 0, "setrlimit: %s", strerror(errno));
}

static const char *try_map(size_t len, int prot)
{
    void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return errno == ENOMEM ? "ENOMEM" : strerror(errno);
    munmap(p, len);
    return "ok";
}

static int as_limit(const char *self)
{
    unsigned long limit = mapped_bytes(0) + (64UL << 20);
    set_limit(RLIMIT_AS, limit);
    struct rlimit r;
    CHECK(getrlimit(RLIMIT_AS, &r) == 0, "getrlimit: %s", strerror(errno));
    printf("RLIMIT_AS read back: %s\n", r.rlim_cur == limit ? "same" : "different");
    printf("mmap 128 MiB: %s\n", try_map(128UL << 20, PROT_READ));
    printf("mmap 16 MiB: %s\n", try_map(16UL << 20, PROT_READ));
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        printf("child: mmap 128 MiB: %s\n", try_map(128UL << 20, PROT_READ));
        fflush(stdout);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && status == 0, "child status %d", status);
    /* A larger limit for the new image (ld.so and libc need room), kept
     * over exec. */
    set_limit(RLIMIT_AS, 1UL << 40);
    execl(self, self, "show-as", (char *)NULL);
    CHECK(0, "exec %s: %s", self, strerror(errno));
    return 1;
}

static int data_limit(void)
{
    set_limit(RLIMIT_DATA, mapped_bytes(1) + (8UL << 20));
    void *old = sbrk(0);
    printf("sbrk 16 MiB: %s\n", sbrk(16 << 20) == (void *)-1 ? "fails" : "ok");
    printf("sbrk 1 MiB: %s\n", sbrk(1 << 20) == (void *)-1 ? "fails" : "ok");
    CHECK(brk(old) == 0, "brk back: %s", strerror(errno));
    printf("private writable mmap 16 MiB: %s\n", try_map(16UL << 20, PROT_READ | PROT_WRITE));
    printf("read-only mmap 16 MiB: %s\n", try_map(16UL << 20, PROT_READ));
    printf("private writable mmap 1 MiB: %s\n", try_map(1UL << 20, PROT_READ | PROT_WRITE));
    return 0;
}

static int depth;

static int recurse(int n)
{
    volatile char frame[64 << 10];
    frame[0] = (char)n;
    depth = n;
    if (n % 4 == 0) {
        printf("depth %d\n", n);
        fflush(stdout);
    }
    return n > 100 ? frame[0] : recurse(n + 1) + frame[0];
}

static int stack_limit(void)
{
    set_limit(RLIMIT_STACK, 1 << 20);
    return recurse(1);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "maxmaps") == 0)
        return maxmaps();
    if (strcmp(mode, "map") == 0 && argc > 2) {
        long n = atol(argv[2]);
        for (long k = 0; k < n; k++) {
            int prot = (k & 1) ? PROT_READ : PROT_NONE;
            CHECK(mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED,
                  "mmap %ld: %s", k, strerror(errno));
        }
        printf("mapped %ld areas\n", n);
        if (argc > 3) {
            /* Then time K more, one at a time: median TSC cycles each. */
            long k = atol(argv[3]);
            static uint64_t t[4096];
            k = k > 4096 ? 4096 : k;
            for (long i = 0; i < k; i++) {
                int prot = ((n + i) & 1) ? PROT_READ : PROT_NONE;
                uint64_t t0 = __builtin_ia32_rdtsc();
                CHECK(mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED,
                      "mmap: %s", strerror(errno));
                t[i] = __builtin_ia32_rdtsc() - t0;
            }
            for (long i = 1; i < k; i++)
                for (long j = i; j > 0 && t[j - 1] > t[j]; j--) {
                    uint64_t x = t[j];
                    t[j] = t[j - 1];
                    t[j - 1] = x;
                }
            printf("mmap at %ld areas: median %llu cycles\n", n, (unsigned long long)t[k / 2]);
        }
        return 0;
    }
    if (strcmp(mode, "as") == 0)
        return as_limit(argv[0]);
    if (strcmp(mode, "data") == 0)
        return data_limit();
    if (strcmp(mode, "stack") == 0)
        return stack_limit();
    if (strcmp(mode, "show-as") == 0) {
        struct rlimit r;
        CHECK(getrlimit(RLIMIT_AS, &r) == 0, "getrlimit: %s", strerror(errno));
        printf("after exec RLIMIT_AS is %lu GiB\n", (unsigned long)(r.rlim_cur >> 30));
        return 0;
    }
    fprintf(stderr, "usage: limits maxmaps|as|data|stack\n");
    return 2;
}

/* vmrun's vDSO: the time calls a program makes most, answered in user mode
 * from the TSC and the data page the guest kernel keeps (vvar), so that
 * they never enter the kernel. Mapped into every process as [vdso], with
 * the data page 6 pages below it ([vvar], [vvar_vclock]), where Linux puts
 * them. Clocks it does not know fall back to the real system call.
 *
 * The data page's layout is contract::vvar::VvarData. */
#include <stdint.h>

#define PAGE 4096
#define VVAR_BELOW (6 * PAGE)
#define VVAR_MAGIC 0x5241565655524d56ULL /* "VMRUVVAR" */

struct vvar {
    uint64_t magic;
    uint64_t tsc0;
    uint64_t mult; /* nanoseconds per TSC tick, 32.32 fixed point */
    uint64_t realtime0;
    uint64_t monotonic0;
};

struct timespec64 {
    int64_t tv_sec;
    int64_t tv_nsec;
};

struct timeval64 {
    int64_t tv_sec;
    int64_t tv_usec;
};

extern const char __ehdr_start[] __attribute__((visibility("hidden")));

static inline const volatile struct vvar *vvar(void)
{
    return (const volatile struct vvar *)(__ehdr_start - VVAR_BELOW);
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline long sys2(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

static inline long sys3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

/* Nanoseconds since boot by the TSC. */
static inline uint64_t since_boot(const volatile struct vvar *v)
{
    unsigned __int128 t = (unsigned __int128)(rdtsc() - v->tsc0) * v->mult;
    return (uint64_t)(t >> 32);
}

static inline void to_timespec(uint64_t ns, struct timespec64 *ts)
{
    ts->tv_sec = (int64_t)(ns / 1000000000u);
    ts->tv_nsec = (int64_t)(ns % 1000000000u);
}

/* The clock's nanoseconds now, or 0 for clocks the kernel must answer. */
static inline int read_clock(int clk, uint64_t *ns)
{
    const volatile struct vvar *v = vvar();
    if (v->magic != VVAR_MAGIC)
        return 0;
    switch (clk) {
    case 0: /* CLOCK_REALTIME */
    case 5: /* CLOCK_REALTIME_COARSE */
    case 11: /* CLOCK_TAI */
        *ns = v->realtime0 + since_boot(v);
        return 1;
    case 1: /* CLOCK_MONOTONIC */
    case 4: /* CLOCK_MONOTONIC_RAW */
    case 6: /* CLOCK_MONOTONIC_COARSE */
    case 7: /* CLOCK_BOOTTIME */
        *ns = v->monotonic0 + since_boot(v);
        return 1;
    }
    return 0;
}

int __vdso_clock_gettime(int clk, struct timespec64 *ts)
{
    uint64_t ns;
    if (!read_clock(clk, &ns))
        return (int)sys2(228, clk, (long)ts);
    to_timespec(ns, ts);
    return 0;
}

int __vdso_gettimeofday(struct timeval64 *tv, void *tz)
{
    uint64_t ns;
    if (!read_clock(0, &ns))
        return (int)sys2(96, (long)tv, (long)tz);
    if (tv) {
        tv->tv_sec = (int64_t)(ns / 1000000000u);
        tv->tv_usec = (int64_t)(ns % 1000000000u / 1000u);
    }
    if (tz) {
        int *z = tz;
        z[0] = 0;
        z[1] = 0;
    }
    return 0;
}

long __vdso_time(long *t)
{
    uint64_t ns;
    long s;
    if (!read_clock(0, &ns))
        return sys2(201, (long)t, 0);
    s = (long)(ns / 1000000000u);
    if (t)
        *t = s;
    return s;
}

int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
{
    (void)unused;
    if (cpu)
        *cpu = 0;
    if (node)
        *node = 0;
    return 0;
}

int __vdso_clock_getres(int clk, struct timespec64 *res)
{
    uint64_t ns;
    if (!read_clock(clk, &ns))
        return (int)sys3(229, clk, (long)res, 0);
    if (res) {
        res->tv_sec = 0;
        res->tv_nsec = (clk == 5 || clk == 6) ? 4000000 : 1;
    }
    return 0;
}

int clock_gettime(int, struct timespec64 *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval64 *, void *) __attribute__((weak, alias("__vdso_gettimeofday")));
long time(long *) __attribute__((weak, alias("__vdso_time")));
int getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(int, struct timespec64 *) __attribute__((weak, alias("__vdso_clock_getres")));

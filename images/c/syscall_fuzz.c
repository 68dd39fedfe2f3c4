/* syscall_fuzz SEED COUNT [-v]: COUNT raw system calls with numbers 0-500
 * and edge-case arguments, from a fixed xorshift seed, so that a run is
 * repeatable. The kernel must answer each one with a result or an error and
 * keep running; the program then prints "syscall_fuzz: done, N calls made"
 * on its saved standard output and exits 0. With -v it first prints each
 * call (number and six arguments) before making it, to find the call a
 * kernel crashes on.
 *
 * Arguments are drawn from pools: small integers, file descriptors (valid,
 * closed, negative, huge), pointers (a writable scratch buffer, its last
 * bytes before a PROT_NONE guard page so buffers straddle into it, a
 * read-only page, the program's text, unmapped, kernel-half and
 * non-canonical addresses, the top of user space), lengths (0, 1, page
 * sizes, 2^31, 2^32, 2^47, 2^63, -1) and random words. Before each call the
 * scratch buffer is refilled from the same pools, so structures the kernel
 * reads from it (iovecs, timespecs, paths, sigactions) hold edge cases too;
 * some slots hold real paths.
 *
 * The program must survive its own calls: no pointer argument or scratch
 * word ever points at its stack or data, and calls that change mappings
 * (mmap, munmap, mprotect, mremap, madvise...) get addresses inside a
 * sacrificial arena, or bad ones, with lengths that keep them inside it or
 * exceed the user address space. Calls that wait get a zero timeout, and
 * locks never wait (see `sanitize`). Calls that would legitimately end or
 * wedge the run are skipped (see `denied`, with the reason for each). Fds 0,
 * 1 and 2 are replaced by a directory so that reads never wait for input.
 * Meant to be run under vmrun --isolate (no host files are visible or
 * writable); natively, run it only as an unprivileged user in a scratch
 * directory. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_mseal
#define SYS_mseal 462
#endif

#define PAGE 4096UL
#define TASK_SIZE 0x7ffffffff000UL
#define SCRATCH_PAGES 4
#define ARENA_LEN (16UL << 20)
/* Saved standard output, for the final line and -v. */
#define OUT_FD 1000
#define MAX_NR 500

static uint64_t rng_state;
static unsigned char *scratch; /* SCRATCH_PAGES read-write, then a guard page */
static unsigned char *ro_page;
static unsigned char *arena; /* ARENA_LEN, initially PROT_NONE */

static uint64_t next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static uint64_t below(uint64_t n)
{
    return next() % n;
}

static uint64_t pick(const uint64_t *pool, size_t n)
{
    return pool[below(n)];
}

#define PICK(pool) pick(pool, sizeof(pool) / sizeof(pool[0]))

static const uint64_t small_ints[] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 32, 64, 0x100, 0x7fffffff};

static const uint64_t fds[] = {
    0, 1, 2, 3, 4, 5, 6, 7, 63, 1023, 1024, 1 << 20, 0x7fffffff,
    (uint64_t)-1, (uint64_t)-100 /* AT_FDCWD */, (uint64_t)-2, 0x80000000, 0xffffffff,
};

static const uint64_t lengths[] = {
    0, 1, 7, 8, 16, 255, 4095, 4096, 4097, 8192, 1 << 20, 1UL << 31, 1UL << 32,
    1UL << 47, 1UL << 63, (uint64_t)-1, (uint64_t)-4096, 0x7ffff000,
};

/* Addresses that are wrong in one way or another. */
static const uint64_t bad_pointers[] = {
    0,
    1,
    0xfff,
    0x1000,
    0x10000,
    0x10000000000,         /* 1 TiB: unmapped */
    TASK_SIZE - 8,         /* the last user bytes: unmapped natively, the
                              top of the stack (above all the program uses)
                              in vmrun's fixed layout */
    TASK_SIZE - 1,
    TASK_SIZE,             /* first byte past user space */
    0x800000000000,        /* first non-canonical address */
    0x8000000000000000,
    0xdead000000000000,    /* non-canonical */
    0xffff800000000000,    /* kernel half */
    0xffff888000000000,    /* Linux's direct map */
    0xffffffff80000000,    /* kernel text */
    0xffffffffff600000,    /* vsyscall page */
    0xfffffffffffff000,
    0xffffffffffffffff,
};

static const char *const paths[] = {
    "/", ".", "..", "", "/proc/self/maps", "/proc/self/status", "/proc/self/fd",
    "/proc/self/exe", "/dev/null", "/dev/zero", "/dev/urandom", "/nonexistent/x",
    "/proc", "/tmp", "x", "/proc/self/cwd/..",
};

/* Where fill_scratch put its paths (filled before the arguments are drawn,
 * so a pointer to one finds a path). */
#define PATH_SLOTS 4
static size_t path_slots[PATH_SLOTS];

static uint64_t good_pointer(void)
{
    uint64_t end = (uint64_t)scratch + SCRATCH_PAGES * PAGE;
    switch (below(7)) {
    case 6:
        return (uint64_t)scratch + path_slots[below(PATH_SLOTS)];
    case 0:
        return (uint64_t)scratch;
    case 1:
        return (uint64_t)scratch + below(SCRATCH_PAGES * PAGE);
    case 2:
        return end - 1 - below(16); /* straddles into the guard page */
    case 3:
        return end; /* the guard page itself */
    case 4:
        return (uint64_t)ro_page + below(64);
    default:
        return (uint64_t)&good_pointer + below(64); /* read-only text */
    }
}

static uint64_t pointer(void)
{
    switch (below(4)) {
    case 0:
        return PICK(bad_pointers);
    case 1:
        return (uint64_t)arena + below(ARENA_LEN);
    default:
        return good_pointer();
    }
}

/* One argument of an unknown call. */
static uint64_t argument(void)
{
    switch (below(8)) {
    case 0:
        return PICK(small_ints);
    case 1:
        return PICK(fds);
    case 2:
    case 3:
        return pointer();
    case 4:
        return PICK(lengths);
    case 5:
        return 1UL << below(64); /* one flag bit */
    case 6:
        return (uint64_t)-(int64_t)below(4096); /* -errno-like values */
    default:
        return next();
    }
}

/* Bad addresses for calls that change mappings: none may reach the
 * program's own mappings with a length below ARENA_LEN (so not NULL or
 * 0x10000, below a non-PIE program's text, nor TASK_SIZE - PAGE, the top
 * stack page in vmrun's fixed layout). */
static const uint64_t bad_arena_pointers[] = {
    0x10000000000, TASK_SIZE, 0x800000000000,
    0x8000000000000000, 0xdead000000000000, 0xffff800000000000,
    0xffffffffff600000, 0xfffffffffffff000, 0xffffffffffffffff,
};

/* An address for a call that changes mappings: inside the first half of
 * the arena (page aligned or not) or a bad one. Never the program's own. */
static uint64_t arena_address(void)
{
    switch (below(4)) {
    case 0:
        return PICK(bad_arena_pointers);
    case 1:
        return (uint64_t)arena + below(ARENA_LEN / 2);
    default:
        return (uint64_t)arena + below(ARENA_LEN / 2 / PAGE) * PAGE;
    }
}

/* A length that keeps [arena_address, +len) inside the arena or runs past
 * the top of user space (so it is refused). */
static uint64_t arena_length(void)
{
    static const uint64_t huge[] = {1UL << 47, 1UL << 63, (uint64_t)-1, (uint64_t)-4096};
    switch (below(4)) {
    case 0:
        return PICK(huge);
    case 1:
        return below(3) * PAGE + below(2);
    default:
        return below(ARENA_LEN / 2 / PAGE) * PAGE;
    }
}

static void fill_scratch(void)
{
    uint64_t *words = (uint64_t *)scratch;
    for (size_t i = 0; i < SCRATCH_PAGES * PAGE / 8; i++)
        words[i] = argument();
    /* A few NUL-terminated paths at random 8-byte slots. */
    for (int k = 0; k < PATH_SLOTS; k++) {
        const char *p = paths[below(sizeof(paths) / sizeof(paths[0]))];
        size_t at = below(SCRATCH_PAGES * PAGE / 8 - 8) * 8;
        memcpy(scratch + at, p, strlen(p) + 1);
        path_slots[k] = at;
    }
}

/* Calls that would end or wedge the run, or make it unable to go on, and
 * must not be made at all, each with why. */
static int denied(long nr)
{
    switch (nr) {
    case SYS_exit:            /* end the run */
    case SYS_exit_group:      /* end the run */
    case SYS_kill:            /* with our pid or 0/-1: a random signal kills us */
    case SYS_tkill:           /* ditto, to our own thread */
    case SYS_tgkill:          /* ditto */
    case SYS_rt_sigqueueinfo: /* ditto */
    case SYS_rt_tgsigqueueinfo: /* ditto */
    case SYS_pidfd_send_signal: /* ditto */
    case SYS_pause:           /* sleeps until a signal nobody sends */
    case SYS_rt_sigsuspend:   /* ditto */
    /* (Sleeps with a timeout are made with a zero one: see sanitize.) */
    case SYS_futex_waitv:     /* a wait on words holding the expected values
                                 sleeps forever: no other thread wakes it */
    case SYS_pipe:            /* reading our own empty pipe (or writing a full
                                 one) sleeps forever */
    case SYS_pipe2:           /* ditto */
    case SYS_socketpair:      /* ditto, for a socket pair */
    case SYS_socket:          /* blocking accept/recv on our own sockets */
    case SYS_eventfd:         /* reading a zero eventfd sleeps forever */
    case SYS_eventfd2:        /* ditto */
    case SYS_signalfd:        /* reading one sleeps until a signal arrives */
    case SYS_signalfd4:       /* ditto */
    case SYS_timerfd_create:  /* reading one sleeps until a random expiry */
    case SYS_msgget:          /* SysV IPC objects outlive the program, and
                                 msgrcv/msgsnd/semop on them sleep */
    case SYS_msgrcv:          /* ditto */
    case SYS_msgsnd:          /* ditto */
    case SYS_semget:          /* ditto */
    case SYS_semop:           /* ditto */
    case SYS_semtimedop:      /* ditto */
    case SYS_shmget:          /* ditto */
    case SYS_mq_open:         /* ditto, POSIX message queues */
    case SYS_mq_timedreceive: /* ditto */
    case SYS_mq_timedsend:    /* ditto */
    case SYS_io_setup:        /* io_getevents on its context sleeps */
    case SYS_fanotify_init:   /* reading one sleeps until a file event */
    case SYS_inotify_init:    /* reading one sleeps until a file changes */
    case SYS_inotify_init1:   /* ditto */
    case SYS_userfaultfd:     /* faults on registered ranges wait for a handler */
    case SYS_alarm:           /* SIGALRM later ends the run */
    case SYS_setitimer:       /* ditto, SIGALRM/SIGVTALRM/SIGPROF */
    case SYS_timer_create:    /* ditto, any signal */
    case SYS_setrlimit:       /* RLIMIT_CPU/RLIMIT_FSIZE signals end the run;
                                 small RLIMIT_NOFILE/AS stop the final report */
    case SYS_prlimit64:       /* ditto */
    case SYS_rt_sigreturn:    /* loads rip, rsp and the rest from the stack */
    case SYS_arch_prctl:      /* ARCH_SET_FS replaces the thread pointer that
                                 errno and the rest of TLS need */
    case SYS_brk:             /* shrinking frees static glibc's TLS block */
    case SYS_rseq:            /* a registered area in the scratch buffer gets
                                 overwritten, and Linux then kills the task */
    case SYS_seccomp:         /* strict mode kills us at the next call */
    case SYS_fork:            /* a second process fuzzing on, or waiting */
    case SYS_vfork:           /* ditto, and the parent waits for the child */
    case SYS_clone:           /* ditto, or a thread on a random stack */
    case SYS_clone3:          /* ditto */
    case SYS_execve:          /* replaces the program */
    case SYS_execveat:        /* ditto */
    case SYS_process_vm_writev: /* writes our memory at addresses read from
                                   the scratch buffer */
    case 335:                 /* uretprobe: Linux 6.11+ kills any caller but
                                 its trampoline with SIGILL */
    case 336:                 /* uprobe (Linux 6.18): likewise */
    case SYS_ptrace:          /* PTRACE_TRACEME leaves us stopped at a signal */
    case SYS_reboot:          /* root-only effects on the whole machine when run */
    case SYS_kexec_load:      /* natively; none belong in a fuzzer */
    case SYS_kexec_file_load:
    case SYS_init_module:
    case SYS_finit_module:
    case SYS_delete_module:
    case SYS_swapon:
    case SYS_swapoff:
    case SYS_mount:
    case SYS_umount2:
    case SYS_pivot_root:
    case SYS_settimeofday:
    case SYS_clock_settime:
    case SYS_adjtimex:
    case SYS_clock_adjtime:
    case SYS_sethostname:
    case SYS_setdomainname:
    case SYS_iopl:
    case SYS_ioperm:
    case SYS_acct:
    case SYS_quotactl:
        return 1;
    default:
        return 0;
    }
}

/* Make the arguments of calls that change mappings safe for the program
 * itself (see the top of the file). */
static void sanitize(long nr, uint64_t a[6])
{
    switch (nr) {
    case SYS_mmap:
    case SYS_munmap:
    case SYS_mprotect:
    case SYS_madvise:
    case SYS_remap_file_pages:
    case SYS_pkey_mprotect:
    case SYS_mseal:
        a[0] = arena_address();
        a[1] = arena_length();
        break;
    case SYS_mremap:
        a[0] = arena_address();
        a[1] = arena_length();
        a[2] = arena_length();
        a[4] = arena_address();
        break;
    case SYS_shmat:
        a[1] = arena_address();
        break;
    /* Waits and sleeps get a zero timeout (the read-only page holds
     * zeros), so they return at once instead of sleeping for random,
     * possibly endless, times. */
    case SYS_poll:
        a[2] = below(2); /* ms */
        break;
    case SYS_ppoll:
    case SYS_rt_sigtimedwait:
    case SYS_clock_nanosleep:
        a[2] = (uint64_t)ro_page;
        break;
    case SYS_select:
    case SYS_pselect6:
        a[4] = (uint64_t)ro_page;
        break;
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
        a[3] = 0; /* ms */
        break;
    case SYS_epoll_pwait2:
        a[3] = (uint64_t)ro_page;
        break;
    case SYS_nanosleep:
        a[0] = (uint64_t)ro_page;
        break;
    case SYS_futex: {
        /* Waits, wakes and requeues only (the PI and lock operations can
         * sleep on an owner), with a zero timeout: relative for
         * FUTEX_WAIT, an absolute time long past for FUTEX_WAIT_BITSET. */
        static const uint64_t ops[] = {0, 1, 3, 4, 9, 10};
        a[1] = (a[1] & 128 /* FUTEX_PRIVATE_FLAG */) | PICK(ops);
        a[3] = (uint64_t)ro_page;
        break;
    }
    case SYS_flock:
        /* Never wait: a second open of a file locked through another one
         * would wait forever. */
        a[1] |= 4; /* LOCK_NB */
        break;
    case SYS_fcntl:
        /* Likewise for the waiting record locks (OFD locks of two opens
         * conflict within one process). */
        if (a[1] == 7 /* F_SETLKW */)
            a[1] = 6 /* F_SETLK */;
        if (a[1] == 38 /* F_OFD_SETLKW */)
            a[1] = 37 /* F_OFD_SETLK */;
        break;
    case SYS_prctl:
        if (a[0] == 22 /* PR_SET_SECCOMP */ || a[0] == 35 /* PR_SET_MM */)
            a[0] = 15; /* PR_SET_NAME */
        break;
    case SYS_close_range:
        /* Keep OUT_FD. */
        if (a[1] >= OUT_FD)
            a[1] = OUT_FD - 1;
        break;
    }
    /* Never close or replace OUT_FD. */
    for (int i = 0; i < 6; i++)
        if (a[i] == OUT_FD)
            a[i] = (uint64_t)-1;
}

static void put_str(const char *s)
{
    if (write(OUT_FD, s, strlen(s)) < 0) {
        /* Nothing to do: the exit status still tells. */
    }
}

static void put_hex(uint64_t v)
{
    char buf[20];
    int n = 0;
    buf[n++] = ' ';
    for (int shift = 60; shift >= 0; shift -= 4) {
        int d = (v >> shift) & 15;
        if (d || n > 1 || shift == 0)
            buf[n++] = "0123456789abcdef"[d];
    }
    buf[n] = 0;
    put_str(buf);
}

static void put_dec(uint64_t v)
{
    char buf[24];
    int n = sizeof(buf);
    buf[--n] = 0;
    do {
        buf[--n] = '0' + v % 10;
        v /= 10;
    } while (v);
    put_str(buf + n);
}

static void setup(void)
{
    /* The saved standard output, then fds 0-2 on a directory: reads give
     * EISDIR and writes EBADF instead of waiting or flooding the output. */
    if (fcntl(1, F_DUPFD, OUT_FD) != OUT_FD)
        exit(2);
    int dir = open("/", O_RDONLY | O_DIRECTORY);
    if (dir < 0 || dup2(dir, 0) != 0 || dup2(dir, 1) != 1 || dup2(dir, 2) != 2)
        exit(2);
    if (dir > 2)
        close(dir);
    scratch = mmap(NULL, (SCRATCH_PAGES + 1) * PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ro_page = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    arena = mmap(NULL, ARENA_LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch == MAP_FAILED || ro_page == MAP_FAILED || arena == MAP_FAILED)
        exit(2);
    if (mprotect(scratch + SCRATCH_PAGES * PAGE, PAGE, PROT_NONE) != 0)
        exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        static const char usage[] = "usage: syscall_fuzz SEED COUNT [-v]\n";
        if (write(2, usage, sizeof(usage) - 1) < 0)
            return 2;
        return 2;
    }
    rng_state = strtoull(argv[1], NULL, 0) * 0x9e3779b97f4a7c15ULL + 1;
    unsigned long count = strtoul(argv[2], NULL, 0);
    int verbose = argc > 3 && strcmp(argv[3], "-v") == 0;
    setup();
    unsigned long made = 0;
    for (unsigned long i = 0; i < count; i++) {
        long nr = (long)below(MAX_NR + 1);
        if (denied(nr))
            continue;
        fill_scratch();
        uint64_t a[6];
        for (int k = 0; k < 6; k++)
            a[k] = argument();
        sanitize(nr, a);
        if (verbose) {
            put_hex(i);
            put_str(":");
            put_hex((uint64_t)nr);
            for (int k = 0; k < 6; k++)
                put_hex(a[k]);
            put_str("\n");
        }
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        made++;
    }
    put_str("syscall_fuzz: done, ");
    put_dec(made);
    put_str(" calls made\n");
    return 0;
}

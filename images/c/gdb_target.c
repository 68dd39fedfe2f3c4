/* gdb_target: the program the gdb tests and docs/gdb.md drive under
 * `vmrun --gdb`. Built with debug information and without optimisation
 * so that gdb sees every local. main adds a local to a global, stores
 * the sum in the global, grows the heap with a malloc the brk serves,
 * and prints what it has; with the argument "segv" it then stores
 * through a bad pointer and dies of SIGSEGV; with "spin" it then spins
 * in user mode until a debugger clears `spinning` (gdb's interrupt);
 * with "fork" a child changes its copy of `counter` and the parent
 * waits for it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Smaller than glibc's mmap threshold (128 KiB), so brk serves it; two
 * of them are more than the heap glibc's start-up leaves: the second
 * grows [heap]. */
#define HEAP_BYTES 100000

int counter = 7;
volatile int spinning = 1;

static int add(int a, int b)
{
    return a + b;
}

static char *grow_heap(void)
{
    char *first = malloc(HEAP_BYTES);
    char *buf = malloc(HEAP_BYTES);
    if (first == NULL || buf == NULL)
        exit(2);
    memset(buf, 1, HEAP_BYTES);
    return buf;
}

/* The child's part with "fork": its own copy of counter changes. */
static void child_work(void)
{
    counter = 100;
    printf("child counter %d\n", add(counter, 1));
}

static void crash(void)
{
    volatile int *bad = (volatile int *)16;
    *bad = 1;
}

int main(int argc, char **argv)
{
    int local = 42;
    int sum = add(local, counter);
    counter = sum;
    char *buf = grow_heap();
    printf("local %d counter %d sum %d heap %d\n", local, counter, sum, buf[HEAP_BYTES - 1]);
    if (argc > 1 && strcmp(argv[1], "spin") == 0)
        while (spinning)
            ;
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            child_work();
            fflush(stdout);
            _exit(0);
        }
        int status;
        waitpid(child, &status, 0);
        printf("parent counter %d child status %d\n", counter, status);
    }
    if (argc > 1 && strcmp(argv[1], "segv") == 0)
        crash();
    return 0;
}

/* null_deref: writes "before the fault\n" to stdout with write(2), then
 * stores through a NULL pointer and dies of SIGSEGV (shell status 139).
 * The line checks that output written before a fatal fault is not lost. */
#include <string.h>
#include <unistd.h>

int main(void)
{
    static const char before[] = "before the fault\n";
    if (write(1, before, strlen(before)) != (ssize_t)strlen(before))
        return 2;
    *(volatile int *)0 = 1;
    return 3; /* not reached */
}

/* printf_lines: "line <i>" for i from 0 to N-1 (default 1000) with
 * printf, as a filter writes: built with musl, whose stdio flushes its
 * buffer with writev(2). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    for (int i = 0; i < n; i++)
        printf("line %d\n", i);
    return 0;
}

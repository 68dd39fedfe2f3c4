/* hello: printf through the C library. Built three ways: glibc -static
 * (ET_EXEC), glibc -static-pie (ET_DYN without PT_INTERP) and musl -static. */
#include <stdio.h>

int main(void)
{
    printf("hello, world\n");
    return 0;
}

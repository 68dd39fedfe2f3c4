/* threads: 4 pthreads add to a shared total under a mutex, signal a
 * condition variable when done, and are joined; prints the total and the
 * sum of their return values (the same natively and in the guest). */
#include <stdio.h>
#include <pthread.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static long total; static int ready;
static void *work(void *arg){ long n=(long)arg; for(long i=0;i<100000;i++){ pthread_mutex_lock(&m); total+=n; pthread_mutex_unlock(&m);} pthread_mutex_lock(&m); ready++; pthread_cond_signal(&c); pthread_mutex_unlock(&m); return (void*)n; }
int main(void){ pthread_t t[4]; for(long i=0;i<4;i++) pthread_create(&t[i],0,work,(void*)(i+1));
 pthread_mutex_lock(&m); while(ready<4) pthread_cond_wait(&c,&m); pthread_mutex_unlock(&m);
 long s=0; for(int i=0;i<4;i++){ void *r; pthread_join(t[i],&r); s+=(long)r; }
 printf("total=%ld joined=%ld\n", total, s); return 0; }

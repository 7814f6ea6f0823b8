/* Threads under the preloaded allocator: more threads alive at once than
 * the platform has CPU slots (512), blocks freed by other threads, and
 * frees from other libraries' thread-exit destructors that run after the
 * allocator's own exit hook (a pthread key created later runs later; a
 * __cxa_thread_atexit_impl destructor, as C++ thread_local and Rust TLS
 * register them). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE 700
#define ROUNDS 3

extern int __cxa_thread_atexit_impl(void (*)(void *), void *, void *);
extern void *__dso_handle;

static pthread_key_t late_key;
static pthread_barrier_t all_alive;
static void *handoff[LIVE];
static int failed;

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "threads.c: %s\n", what);
        __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
    }
}

/* Runs after the allocator's own key destructor (its key is older). */
static void late_dtor(void *v) {
    check(((unsigned char *)v)[0] == 0x5a, "late key value intact");
    free(v);
    void *again = malloc(100);
    check(again != NULL, "malloc in a late key destructor");
    free(again);
}

static void tls_dtor(void *v) {
    free(v);
    char *s = strdup("thread_local destructor");
    check(s != NULL, "strdup in a TLS destructor");
    free(s);
}

static void *worker(void *arg) {
    uintptr_t i = (uintptr_t)arg;
    /* The first allocation makes this thread a CPU. */
    unsigned char *mine = malloc(64 + i % 512);
    check(mine != NULL, "malloc");
    memset(mine, (int)i, 64);
    __atomic_store_n(&handoff[i], mine, __ATOMIC_RELEASE);
    unsigned char *v = malloc(32);
    v[0] = 0x5a;
    pthread_setspecific(late_key, v);
    __cxa_thread_atexit_impl(tls_dtor, malloc(48), &__dso_handle);
    for (int k = 0; k < 200; k++) free(malloc((size_t)(k * 37 % 3000) + 1));
    pthread_barrier_wait(&all_alive);
    /* Free the neighbour's block: a cross-thread free. */
    uintptr_t j = (i + 1) % LIVE;
    unsigned char *theirs = __atomic_load_n(&handoff[j], __ATOMIC_ACQUIRE);
    check(theirs[0] == (unsigned char)j, "neighbour's block intact");
    free(theirs);
    return NULL;
}

int main(void) {
    /* The allocator's key exists by now (this thread allocated). */
    free(malloc(1));
    pthread_key_create(&late_key, late_dtor);
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t t[LIVE];
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 64 << 10);
        pthread_barrier_init(&all_alive, NULL, LIVE);
        for (uintptr_t i = 0; i < LIVE; i++)
            if (pthread_create(&t[i], &a, worker, (void *)i) != 0) {
                fprintf(stderr, "threads.c: pthread_create %lu failed\n", (unsigned long)i);
                return 1;
            }
        for (int i = 0; i < LIVE; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&all_alive);
    }
    if (failed) return 1;
    puts("threads ok");
    return 0;
}

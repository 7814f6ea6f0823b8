/* fork from a multithreaded parent: threads allocate and free in a loop,
 * and short-lived threads keep starting and exiting (their exit hooks hand
 * their caches back), while the main thread forks; every child allocates,
 * frees, starts a thread of its own, and exits 0 within its alarm. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4

static volatile int stop;

static void *churn(void *arg) {
    unsigned seed = (unsigned)(size_t)arg;
    void *keep[64] = {0};
    while (!stop) {
        seed = seed * 1103515245 + 12345;
        unsigned k = (seed >> 8) % 64;
        free(keep[k]);
        size_t n = (seed >> 16) % 5 == 0 ? (seed >> 4) % 100000 : (seed >> 4) % 600;
        keep[k] = malloc(n + 1);
        memset(keep[k], 1, n + 1);
    }
    for (int k = 0; k < 64; k++) free(keep[k]);
    return NULL;
}

/* Fork handlers registered before the allocator's own (the allocator boots
 * at the first malloc, after this constructor): they run after its prepare
 * handler, with the allocator quiesced, and before its parent and child
 * handlers; what they allocate must not wait for the fork to finish. */
static volatile size_t handler_bytes;

static void in_handler(void) {
    char *p = malloc(100);
    memset(p, 3, 100);
    handler_bytes += p[99];
    free(p);
}

__attribute__((constructor)) static void early_handlers(void) {
    pthread_atfork(in_handler, in_handler, in_handler);
}

static void *brief(void *arg) {
    void *p = malloc((size_t)arg);
    memset(p, 2, (size_t)arg);
    free(p);
    return NULL;
}

/* Threads that become CPUs and exit, over and over. */
static void *births(void *arg) {
    (void)arg;
    size_t n = 1;
    while (!stop) {
        pthread_t t;
        if (pthread_create(&t, NULL, brief, (void *)(n % 3000 + 1)) == 0) pthread_join(t, NULL);
        n += 7;
    }
    return NULL;
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 200;
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, churn, (void *)(i + 1));
    pthread_t b;
    pthread_create(&b, NULL, births, NULL);
    int bad = 0;
    for (int f = 0; f < forks; f++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            void *p[100];
            for (int i = 0; i < 100; i++) p[i] = malloc((size_t)i * 97 + 1);
            for (int i = 0; i < 100; i++) free(p[i]);
            char *s = strdup("child");
            p[0] = realloc(s, 100000);
            free(p[0]);
            pthread_t c;
            if (pthread_create(&c, NULL, brief, (void *)5000) != 0 || pthread_join(c, NULL) != 0) _exit(3);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "fork.c: child %d: %s %d\n", f, WIFSIGNALED(st) ? "signal" : "exit",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            bad++;
        }
    }
    stop = 1;
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    pthread_join(b, NULL);
    if (bad) {
        fprintf(stderr, "fork.c: %d of %d children failed\n", bad, forks);
        return 1;
    }
    printf("fork ok: %d children\n", forks);
    return 0;
}

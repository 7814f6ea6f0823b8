/* The malloc contract through the C ABI, run with LD_PRELOAD of the
 * cdylib: alignment, usable sizes, zeroing, realloc both ways, the
 * aligned families, and every bad input. Prints each failure, exits 1 if
 * any. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr, "contract.c:%d: %s\n", __LINE__, #c);             \
            failures++;                                                       \
        }                                                                     \
    } while (0)

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}
static int filled(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

int main(void) {
    long ps = sysconf(_SC_PAGESIZE);

    /* Every size up to 5 pages, then some large ones: 16-aligned, usable. */
    for (size_t n = 0; n <= 5 * 4096 + 17; n += (n < 2048 ? 1 : 61)) {
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & 15) == 0);
        CHECK(malloc_usable_size(p) >= n);
        fill(p, n, (unsigned)n);
        CHECK(filled(p, n, (unsigned)n));
        free(p);
    }
    for (size_t n = 1 << 16; n <= (size_t)64 << 20; n <<= 2) {
        unsigned char *p = malloc(n + 3);
        CHECK(p && ((uintptr_t)p & 15) == 0 && malloc_usable_size(p) >= n + 3);
        p[0] = 1;
        p[n + 2] = 2;
        free(p);
    }

    /* malloc(0): a unique pointer that free takes. */
    void *z1 = malloc(0), *z2 = malloc(0);
    CHECK(z1 && z2 && z1 != z2);
    free(z1);
    free(z2);
    free(NULL);

    /* Sizes that cannot be: NULL with ENOMEM, never a small block. */
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 8, SIZE_MAX - 4096, SIZE_MAX / 2 + 1, (size_t)1 << 62};
    for (unsigned i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        CHECK(malloc(huge[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(calloc(1, huge[i]) == NULL && errno == ENOMEM);
        void *q = NULL;
        CHECK(posix_memalign(&q, 64, huge[i]) == ENOMEM && q == NULL);
        CHECK(aligned_alloc(1 << 16, huge[i]) == NULL);
    }

    /* calloc: overflow refused, memory zeroed even when reused. */
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
    for (size_t n = 1; n < 20000; n = n * 3 + 1) {
        unsigned char *d = malloc(n);
        memset(d, 0xa5, n);
        free(d);
        unsigned char *c = calloc(n, 1);
        int zero = 1;
        for (size_t i = 0; i < n; i++) zero &= c[i] == 0;
        CHECK(zero);
        free(c);
    }

    /* realloc as glibc: NULL is malloc, 0 frees and returns NULL. */
    unsigned char *r = realloc(NULL, 10);
    CHECK(r != NULL);
    fill(r, 10, 3);
    for (size_t n = 11; n < 300000; n = n * 2 + 5) {
        r = realloc(r, n);
        CHECK(r && ((uintptr_t)r & 15) == 0 && filled(r, 10, 3));
    }
    r = realloc(r, 5);
    CHECK(r && r[0] == 3);
    CHECK(realloc(r, 0) == NULL);
    /* In place within a size class. */
    unsigned char *ip = malloc(200);
    CHECK(realloc(ip, 250) == ip);
    /* A failing realloc keeps the block. */
    errno = 0;
    CHECK(realloc(ip, SIZE_MAX) == NULL && errno == ENOMEM);
    ip[0] = 9;
    errno = 0;
    CHECK(reallocarray(ip, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    CHECK(ip[0] == 9);
    ip = reallocarray(ip, 100, 40);
    CHECK(ip && ip[0] == 9 && malloc_usable_size(ip) >= 4000);
    free(ip);

    /* posix_memalign: EINVAL for alignments that are not a power of two
     * times sizeof(void *); every valid one up to 4 MiB honoured. */
    size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 4095, 4097, SIZE_MAX};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *q = (void *)1;
        CHECK(posix_memalign(&q, bad[i], 16) == EINVAL && q == (void *)1);
        errno = 0;
        if (bad[i] != 1 && bad[i] != 2 && bad[i] != 4)
            CHECK(aligned_alloc(bad[i], 16) == NULL && errno == EINVAL);
    }
    for (size_t a = sizeof(void *); a <= ((size_t)4 << 20); a <<= 1) {
        size_t sizes[] = {0, 1, 8, a - 1, a, a + 1, 3 * a + 5, 100000};
        void *keep[8];
        for (unsigned i = 0; i < 8; i++) {
            void *q = NULL;
            CHECK(posix_memalign(&q, a, sizes[i]) == 0);
            CHECK(q && ((uintptr_t)q & (a - 1)) == 0);
            CHECK(malloc_usable_size(q) >= sizes[i]);
            fill(q, sizes[i], (unsigned)(a + i));
            keep[i] = q;
        }
        for (unsigned i = 0; i < 8; i++) {
            CHECK(filled(keep[i], sizes[i], (unsigned)(a + i)));
            if (i & 1) {
                /* realloc of an aligned block: content kept. */
                unsigned char *g = realloc(keep[i], sizes[i] + 70000);
                CHECK(g && filled(g, sizes[i], (unsigned)(a + i)));
                free(g);
            } else {
                free(keep[i]);
            }
        }
        void *m = aligned_alloc(a, 3 * a);
        CHECK(m && ((uintptr_t)m & (a - 1)) == 0);
        free(m);
    }
    /* memalign rounds an alignment up to a power of two. */
    void *m3 = memalign(48, 100);
    CHECK(m3 && ((uintptr_t)m3 & 63) == 0);
    free(m3);
    void *v = valloc(10);
    CHECK(v && ((uintptr_t)v & (ps - 1)) == 0);
    free(v);
    void *pv = pvalloc(ps + 1);
    CHECK(pv && ((uintptr_t)pv & (ps - 1)) == 0 && malloc_usable_size(pv) >= (size_t)(2 * ps));
    free(pv);
    CHECK(malloc_usable_size(NULL) == 0);

    if (failures) {
        fprintf(stderr, "contract.c: %d failures\n", failures);
        return 1;
    }
    puts("contract ok");
    return 0;
}

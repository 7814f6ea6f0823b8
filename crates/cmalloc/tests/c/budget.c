/* Under BSDALLOC_LIMIT=64M: a request beyond the budget is NULL with
 * ENOMEM, the program goes on, and memory freed is usable again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    errno = 0;
    void *big = malloc((size_t)256 << 20);
    if (big != NULL || errno != ENOMEM) {
        fprintf(stderr, "budget.c: 256 MiB under a 64 MiB budget: %p errno %d\n", big, errno);
        return 1;
    }
    void *blocks[64];
    int got = 0;
    for (; got < 64; got++) {
        blocks[got] = malloc(4 << 20);
        if (!blocks[got]) break;
        memset(blocks[got], 1, 4 << 20);
    }
    if (got == 64 || got < 4) {
        fprintf(stderr, "budget.c: %d blocks of 4 MiB under 64 MiB\n", got);
        return 1;
    }
    for (int i = 0; i < got; i++) free(blocks[i]);
    void *again = malloc(16 << 20);
    if (!again) {
        fprintf(stderr, "budget.c: 16 MiB after freeing everything failed\n");
        return 1;
    }
    free(again);
    printf("budget ok: %d blocks of 4 MiB\n", got);
    return 0;
}

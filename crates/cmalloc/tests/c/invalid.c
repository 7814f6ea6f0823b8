/* free of a pointer the allocator never returned: reported and aborted,
 * as glibc does ("free(): invalid pointer"). argv[1] picks the pointer. */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    static char not_heap[64];
    int local = 0;
    const char *what = argc > 1 ? argv[1] : "stack";
    if (!strcmp(what, "stack")) free(&local);
    if (!strcmp(what, "static")) free(not_heap);
    if (!strcmp(what, "inner-page")) {
        char *big = malloc(1 << 20);
        free(big + 4096 * 3);
    }
    if (!strcmp(what, "inner-coloured")) {
        char *big = malloc(70000);
        free(big + 4096);
    }
    if (!strcmp(what, "double-large")) {
        char *big = malloc(1 << 20);
        free(big);
        free(big);
    }
    return 0;
}

/* heldout_keys - keys on stdin, "BUCKET HELDOUT_DOCUMENT KEY" on stdout: the
 * C side of the held-out partition, compared with datasets/images/heldout.py
 * by tests/t_images.sh. */
#include <stdio.h>
#include <string.h>

#include "heldout.h"

int main(void) {
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strcspn(line, "\n");
        line[n] = 0;
        printf("%d %d %s\n", ps_heldout_bucket(line, n), ps_heldout_document(line, n), line);
    }
    return 0;
}

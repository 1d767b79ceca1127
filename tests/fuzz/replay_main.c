/* replay_main.c - runs a libFuzzer harness (LLVMFuzzerTestOneInput) over every file of a corpus
 * directory, so make check replays the regression inputs with any compiler. Exits non-zero if the
 * directory is missing or empty (a replay of nothing proves nothing). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0, k;
        uint8_t chunk[65536];
        while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
            if (len + k > cap) {
                cap = (len + k) * 2;
                buf = realloc(buf, cap);
                if (!buf) return 1;
            }
            memcpy(buf + len, chunk, k);
            len += k;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf ? buf : (const uint8_t *)"", len);
        free(buf);
        n++;
    }
    closedir(d);
    printf("replayed %d inputs from %s\n", n, argv[1]);
    return n > 0 ? 0 : 1;
}

/* The replay driver of every fuzz target: runs LLVMFuzzerTestOneInput over
 * the files, or every file of the directories, given as arguments, so CTest
 * can replay the seed corpora with gcc (no libFuzzer needed). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <dirent.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Run the target over one file; returns 0, or 1 when it cannot be read. */
static int fuzz_replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 4096;
    size_t n = 0;
    int rc = 1;

    if (f == NULL) {
        goto out;
    }
    buf = malloc(cap);
    while (buf != NULL) {
        uint8_t *grown;

        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        cap *= 2;
        grown = realloc(buf, cap);
        if (grown == NULL) {
            goto out;
        }
        buf = grown;
    }
    if (buf == NULL || ferror(f)) {
        goto out;
    }
    LLVMFuzzerTestOneInput(buf, n);
    rc = 0;
out:
    if (rc != 0) {
        fprintf(stderr, "cannot read %s\n", path);
    }
    free(buf);
    if (f != NULL) {
        fclose(f);
    }
    return rc;
}

/* Replay files, or every file of a directory, given as arguments. */
int main(int argc, char **argv)
{
    int failed = 0;
    int runs = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *e;

        if (stat(argv[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            failed |= fuzz_replay_file(argv[i]);
            runs++;
            continue;
        }
        d = opendir(argv[i]);
        if (d == NULL) {
            failed = 1;
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];

            if (e->d_name[0] == '.') {
                continue;
            }
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            failed |= fuzz_replay_file(path);
            runs++;
        }
        closedir(d);
    }
    fprintf(stderr, "replayed %d inputs\n", runs);
    return failed;
}

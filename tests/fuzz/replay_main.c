/* replay_main.c - runs a fuzz target over files, without libFuzzer.
 *
 *   fuzz_<target> FILE|DIR...
 *
 * Builds without SL_FUZZ (gcc, the asan and release builds) link each
 * target with this driver, and ctest runs it over the target's corpus
 * (tests/fuzz/corpus/<target>/), so every seed and every past finding is
 * a unit test in every build. Each file is passed in a heap buffer of
 * exactly its size, as libFuzzer does, so ASan sees any read past the end.
 * Exits 1 if no input was found (a wrong path must not pass silently). */
#define _POSIX_C_SOURCE 200809L /* fileno */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        perror(path);
        exit(1);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *p = malloc(n ? n : 1);
    if (!p || (n && fread(p, 1, n, f) != n)) {
        fprintf(stderr, "%s: cannot read\n", path);
        exit(1);
    }
    fclose(f);
    LLVMFuzzerTestOneInput(p, n);
    free(p);
    return 1;
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        exit(1);
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        exit(1);
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        count += run_path(sub);
    }
    closedir(d);
    return count;
}

/* Defined by the targets that set something up once, as libFuzzer calls it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

int main(int argc, char **argv)
{
    int count = 0;
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++)
        count += run_path(argv[i]);
    if (count == 0) {
        fprintf(stderr, "%s: no inputs (usage: %s FILE|DIR...)\n", argv[0], argv[0]);
        return 1;
    }
    printf("%s: %d inputs, all properties held\n", argv[0], count);
    return 0;
}

/*
 * Replay a corpus without libFuzzer (any compiler): every argument is a file
 * or a directory of files, each fed once to LLVMFuzzerTestOneInput.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        size_t cap = 4096, len = 0;
        unsigned char *buf = malloc(cap);
        size_t n;
        while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
                len += n;
                if (len == cap) {
                        unsigned char *nb = realloc(buf, cap * 2);
                        if (!nb) {
                                free(buf);
                                buf = NULL;
                                break;
                        }
                        buf = nb;
                        cap *= 2;
                }
        }
        fclose(f);
        if (!buf) {
                fprintf(stderr, "%s: out of memory\n", path);
                return -1;
        }
        (void)LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        return 0;
}

int main(int argc, char **argv)
{
        int files = 0, errors = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        errors++;
                        continue;
                }
                if (!S_ISDIR(st.st_mode)) {
                        errors += run_file(argv[i]) < 0;
                        files++;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                if (!d) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        errors++;
                        continue;
                }
                for (struct dirent *de; (de = readdir(d));) {
                        if (de->d_name[0] == '.')
                                continue;
                        size_t pl = strlen(argv[i]) + strlen(de->d_name) + 2;
                        char *p = malloc(pl);
                        if (!p)
                                abort();
                        snprintf(p, pl, "%s/%s", argv[i], de->d_name);
                        errors += run_file(p) < 0;
                        files++;
                        free(p);
                }
                closedir(d);
        }
        printf("%d input(s) replayed, %d error(s)\n", files, errors);
        return errors || files == 0 ? 1 : 0;
}

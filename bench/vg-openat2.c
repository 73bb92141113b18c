/*
 * For profiling under valgrind only (bench/callgrind.sh): valgrind 3.19, Debian 12's, does
 * not know openat2 (syscall 437) and fails it with ENOSYS, and the engine refuses to run
 * without it. Preloaded, this turns openat2 into openat(flags | O_NOFOLLOW) -- without the
 * RESOLVE_BENEATH confinement, so never use it outside a profiling run on trusted data.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <sys/syscall.h>

long syscall(long nr, ...);

long syscall(long nr, ...)
{
        va_list ap;
        long a[6];
        va_start(ap, nr);
        for (int i = 0; i < 6; i++)
                a[i] = va_arg(ap, long);
        va_end(ap);
        if (nr == SYS_openat2) {
                const struct open_how *h = (const struct open_how *)a[2];
                return openat((int)a[0], (const char *)a[1], (int)h->flags | O_NOFOLLOW,
                              (mode_t)h->mode);
        }
        static long (*real)(long, ...);
        if (!real)
                real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
        return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

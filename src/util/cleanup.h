/* Cleanup attributes and ownership transfer helpers (systemd/lxc style). */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void cta_freep(void *p)
{
        free(*(void **)p);
}

static inline void cta_closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                (void)close(*fd);
                errno = saved;
        }
        *fd = -1;
}

static inline void cta_fclosep(FILE **f)
{
        if (*f)
                (void)fclose(*f);
        *f = NULL;
}

static inline void cta_closedirp(DIR **d)
{
        if (*d)
                (void)closedir(*d);
        *d = NULL;
}

#define _cleanup_free_ _cleanup_(cta_freep)
#define _cleanup_close_ _cleanup_(cta_closep)
#define _cleanup_fclose_ _cleanup_(cta_fclosep)
#define _cleanup_closedir_ _cleanup_(cta_closedirp)

/* Derive `fnp(type **)` from `type *fn(type *)` for use with _cleanup_(). */
#define CTA_DEFINE_CLEANUP(type, fn)                                                               \
        static inline void fn##p(type **p)                                                         \
        {                                                                                          \
                if (*p)                                                                            \
                        (void)fn(*p);                                                              \
                *p = NULL;                                                                         \
        }

/* Hand ownership out of a cleanup variable. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _tp = (p);                                                           \
                (p) = NULL;                                                                        \
                _tp;                                                                               \
        })

#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _tf = (fd);                                                                    \
                (fd) = -1;                                                                         \
                _tf;                                                                               \
        })

#define CTA_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

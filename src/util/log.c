#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/util.h"

static int cta_log_level = LOG_INFO;
static const char *cta_log_ident = "ctagent";
static pthread_mutex_t cta_log_mu = PTHREAD_MUTEX_INITIALIZER;

/* Children forked without exec (the container backend runs liblxc in one)
 * may log: the lock must not be inherited held by another thread. */
static void log_atfork_prepare(void)
{
        pthread_mutex_lock(&cta_log_mu);
}

static void log_atfork_release(void)
{
        pthread_mutex_unlock(&cta_log_mu);
}

__attribute__((constructor)) static void log_atfork_init(void)
{
        (void)pthread_atfork(log_atfork_prepare, log_atfork_release, log_atfork_release);
}

static const char *const cta_level_names[] = {
        [LOG_EMERG] = "emerg",   [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
        [LOG_ERR] = "error",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",     [LOG_DEBUG] = "debug",
};

void cta_log_set_level(int level)
{
        if (level >= LOG_EMERG && level <= LOG_DEBUG)
                cta_log_level = level;
}

int cta_log_get_level(void)
{
        return cta_log_level;
}

void cta_log_set_ident(const char *ident)
{
        cta_log_ident = ident;
}

int cta_log_level_parse(const char *s)
{
        if (!s)
                return -1;
        if (streq(s, "warn"))
                return LOG_WARNING;
        if (streq(s, "err"))
                return LOG_ERR;
        for (int i = LOG_EMERG; i <= LOG_DEBUG; i++)
                if (streq(s, cta_level_names[i]))
                        return i;
        return -1;
}

/* journald reads "<N>" prefixes from a stream connected to it; a terminal or
 * a test log gets a readable timestamp instead. */
static bool to_journal(void)
{
        static int cached = -1;
        if (cached < 0)
                cached = getenv("JOURNAL_STREAM") != NULL;
        return cached == 1;
}

void cta_log_msg(int level, const char *file, int line, const char *func, const char *fmt, ...)
{
        char msg[2048];
        va_list ap;

        if (level > cta_log_level)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        pthread_mutex_lock(&cta_log_mu);
        if (to_journal()) {
                if (cta_log_level >= LOG_DEBUG)
                        fprintf(stderr, "<%d>%s (%s:%d)\n", level, msg, file, line);
                else
                        fprintf(stderr, "<%d>%s\n", level, msg);
        } else {
                struct timespec ts;
                struct tm tm;
                char when[32];
                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
                if (cta_log_level >= LOG_DEBUG)
                        fprintf(stderr, "%s.%03ldZ %s[%d] %s: %s (%s:%d %s)\n", when,
                                ts.tv_nsec / 1000000, cta_log_ident, (int)getpid(),
                                cta_level_names[level], msg, file, line, func);
                else
                        fprintf(stderr, "%s.%03ldZ %s[%d] %s: %s\n", when, ts.tv_nsec / 1000000,
                                cta_log_ident, (int)getpid(), cta_level_names[level], msg);
        }
        fflush(stderr);
        pthread_mutex_unlock(&cta_log_mu);
}

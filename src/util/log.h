/*
 * Logging: one API, leveled, to stderr. Under systemd (JOURNAL_STREAM set)
 * each line starts with a "<N>" priority prefix that journald understands;
 * otherwise lines carry a timestamp and the level name.
 * Never log passwords, keys or tokens; sanitize untrusted strings first
 * (cta_sanitize()).
 */
#pragma once

#include <stdarg.h>
#include <syslog.h>

void cta_log_set_level(int level);      /* LOG_ERR … LOG_DEBUG */
int cta_log_get_level(void);
int cta_log_level_parse(const char *s); /* "debug", "info", …; -1 if unknown */
void cta_log_set_ident(const char *ident);

void cta_log_msg(int level, const char *file, int line, const char *func, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

#define log_debug(...) cta_log_msg(LOG_DEBUG, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_info(...) cta_log_msg(LOG_INFO, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_notice(...) cta_log_msg(LOG_NOTICE, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_warning(...) cta_log_msg(LOG_WARNING, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error(...) cta_log_msg(LOG_ERR, __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Log and return r in one statement. */
#define log_error_ret(r, ...) ({ log_error(__VA_ARGS__); (r); })

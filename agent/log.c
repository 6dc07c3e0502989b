#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level current_level = LOG_NORMAL;

void log_set_level(enum log_level level) { current_level = level; }

static void emit(const char *prefix, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void emit(const char *prefix, const char *fmt, va_list ap)
{
    fputs("shmprov: ", stderr);
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* The body of each log_*(): said only from level on, with its prefix. */
#define EMIT_FROM(level, prefix) \
    do { \
        va_list ap; \
        if (current_level < (level)) \
            return; \
        va_start(ap, fmt); \
        emit(prefix, fmt, ap); \
        va_end(ap); \
    } while (0)

void log_error(const char *fmt, ...)
{
    EMIT_FROM(LOG_QUIET, "error: ");
}

void log_warn(const char *fmt, ...)
{
    EMIT_FROM(LOG_NORMAL, "warning: ");
}

void log_info(const char *fmt, ...)
{
    EMIT_FROM(LOG_NORMAL, "");
}

void log_debug(const char *fmt, ...)
{
    EMIT_FROM(LOG_VERBOSE, "debug: ");
}

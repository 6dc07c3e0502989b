#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level current_level = LOG_NORMAL;

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

static void emit(const char *prefix, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void emit(const char *prefix, const char *fmt, va_list ap)
{
    fputs("shmprov: ", stderr);
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit("error: ", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    if (current_level < LOG_NORMAL)
        return;
    va_start(ap, fmt);
    emit("warning: ", fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;
    if (current_level < LOG_NORMAL)
        return;
    va_start(ap, fmt);
    emit("", fmt, ap);
    va_end(ap);
}

void log_debug(const char *fmt, ...)
{
    va_list ap;
    if (current_level < LOG_VERBOSE)
        return;
    va_start(ap, fmt);
    emit("debug: ", fmt, ap);
    va_end(ap);
}

#pragma once
/* Diagnostics on stderr. stdout is reserved for the command's result (text or
 * one JSON document), so scripts can parse it. */

enum log_level { LOG_QUIET = 0, LOG_NORMAL = 1, LOG_VERBOSE = 2 };

void log_set_level(enum log_level level);

/* "shmprov: error: ..." — always shown. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "shmprov: warning: ..." — hidden by -q. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "shmprov: ..." — hidden by -q. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Only with -v. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

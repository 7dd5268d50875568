/* status.h — how every engine call reports failure.
 *
 * Engine functions return enum pl_status (PL_OK == 0). On failure they leave a one-line
 * message, naming the file/tensor/line and the problem, that pl_last_error() returns until
 * the next failure on the same thread. The engine never calls exit() or abort() for anything
 * a user can cause; asserts guard internal invariants only.
 */
#ifndef PEFTLUA_STATUS_H
#define PEFTLUA_STATUS_H

#include <stdarg.h>

enum pl_status {
    PL_OK = 0,
    PL_ERR_IO,          /* open/read/write/mmap failed */
    PL_ERR_FORMAT,      /* malformed file or data */
    PL_ERR_NOMEM,       /* allocation failed or memory budget exceeded */
    PL_ERR_ARG,         /* invalid argument (shape mismatch, bad option) */
    PL_ERR_UNSUPPORTED, /* valid but not supported (architecture, tensor type) */
    PL_ERR_INTERRUPTED, /* pl_interrupt_request() was called (Ctrl-C) */
    PL_ERR_STATE        /* object used in the wrong state (closed, not loaded) */
};

/* Set the thread's message (printf-style) and return st, so call sites can write
 *   return pl_fail(PL_ERR_FORMAT, "%s: bad magic 0x%08x", path, magic);            */
enum pl_status pl_fail(enum pl_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
enum pl_status pl_vfail(enum pl_status st, const char *fmt, va_list ap);
/* The last failure message on this thread ("" if none). */
const char *pl_last_error(void);
/* Short name of a status ("format error", ...). */
const char *pl_status_str(enum pl_status st);

/* Cooperative interruption: a signal handler calls pl_interrupt_request(); long engine loops
 * call pl_interrupt_check() at safe points (between layers, tokens, steps) and unwind with
 * PL_ERR_INTERRUPTED, leaving every object in a consistent state. */
void pl_interrupt_request(void);
void pl_interrupt_clear(void);
int  pl_interrupt_pending(void);
/* Returns PL_ERR_INTERRUPTED (with message) and clears the flag if a request is pending. */
enum pl_status pl_interrupt_check(void);

#endif

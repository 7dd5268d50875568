/* status.c — per-thread error messages and the interrupt flag (see status.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "peftlua/status.h"

static _Thread_local char pl_errbuf[1024];
static volatile sig_atomic_t pl_interrupt_flag;

enum pl_status pl_vfail(enum pl_status st, const char *fmt, va_list ap)
{
    /* format into a scratch buffer first: the arguments may point into pl_errbuf (callers
     * prefix the last message: pl_fail(st, "%s: %s", path, pl_last_error())) */
    char tmp[sizeof pl_errbuf];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    memcpy(pl_errbuf, tmp, sizeof tmp);
    return st;
}

enum pl_status pl_fail(enum pl_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pl_vfail(st, fmt, ap);
    va_end(ap);
    return st;
}

const char *pl_last_error(void) { return pl_errbuf; }

const char *pl_status_str(enum pl_status st)
{
    switch (st) {
    case PL_OK: return "ok";
    case PL_ERR_IO: return "i/o error";
    case PL_ERR_FORMAT: return "format error";
    case PL_ERR_NOMEM: return "out of memory";
    case PL_ERR_ARG: return "invalid argument";
    case PL_ERR_UNSUPPORTED: return "unsupported";
    case PL_ERR_INTERRUPTED: return "interrupted";
    case PL_ERR_STATE: return "invalid state";
    }
    return "unknown status";
}

void pl_interrupt_request(void) { pl_interrupt_flag = 1; }
void pl_interrupt_clear(void) { pl_interrupt_flag = 0; }
int pl_interrupt_pending(void) { return pl_interrupt_flag != 0; }

enum pl_status pl_interrupt_check(void)
{
    if (!pl_interrupt_flag) return PL_OK;
    pl_interrupt_flag = 0;
    return pl_fail(PL_ERR_INTERRUPTED, "interrupted");
}

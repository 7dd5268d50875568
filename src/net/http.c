/* http.c — the HTTP layer over libmicrohttpd (see include/peftlua/http.h); the only file that
 * includes microhttpd.h. Owner: serve.
 *
 * One server mutex (s->mu) guards the queue, every request's state and the fixed responses.
 * A request is shared by up to three holders, counted in r->refs: its connection (from the
 * first byte to MHD's completion callback), the worker (from pl_http_next to
 * pl_http_req_release) and a streamed response's reader. Each request has its own condition
 * variable, on which its connection thread waits for the answer and for stream data; those
 * waits wake every 200 ms to look at the socket (a client that hung up) and at s->stopping.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "peftlua/alloc.h"
#include "peftlua/http.h"
#include "peftlua/json.h"
#include "peftlua/unicode.h"

#define PL_HTTP_MAX_ROUTES 64
#define PL_HTTP_WAIT_MS 200
#define PL_HTTP_MAX_PENDING ((size_t)64 << 20)   /* stream bytes not yet sent: the client stalls */

enum { ROUTE_QUEUE, ROUTE_STATIC, ROUTE_FIXED };
enum { RQ_BUILDING, RQ_QUEUED, RQ_TAKEN, RQ_WHOLE, RQ_STREAM, RQ_DONE };

struct pl_http_route_def {
    char *method, *path;
    size_t plen;
    unsigned flags;
    int kind;
    enum pl_http_body body;
    size_t max_body;
    char *dir;                   /* static root (resolved) or spool directory */
    int status;                  /* fixed responses (under s->mu) */
    char *ctype, *fbody;
    size_t fn;
};

struct pl_http_server {
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    struct MHD_Daemon *d;
    int listen_fd, port, refs, stopping, started;
    char *host, *token, *token_cookie;
    char **hdrs;                 /* name, value, ..., NULL */
    size_t max_body;
    int max_queue, max_conn;
    unsigned idle_s;
    struct pl_http_route_def routes[PL_HTTP_MAX_ROUTES];
    int nroutes;
    struct pl_http_req *qhead, *qtail;
    int qn;
    uint64_t next_id;
    pthread_mutex_t json_mu;     /* cJSON's error position is a global */
};

struct pl_http_req {
    struct pl_http_server *s;
    pthread_cond_t cv;
    int refs, state, gone, ended, fd;
    uint64_t id;
    char *method, *path;
    char **hdr, **qry;           /* name, value pairs */
    int nhdr, nqry;
    char *body;
    size_t body_n, body_cap;
    char *body_path;
    int body_fd;
    struct pl_json *json;
    struct pl_http_req *next;
    int status;                  /* the answer */
    char **rhdr;
    char *rbody;
    size_t rbody_n;
    char *out;                   /* stream bytes not yet handed to MHD */
    size_t out_len, out_off, out_cap;
};

/* per MHD request (its con_cls) */
struct pl_http_conn {
    struct pl_http_route_def *route;
    struct pl_http_req *r;
    int err_status;
    char err_msg[256];
    const char *err_type, *err_code;
    size_t limit, seen;
};

/* ---------------------------------------------------------------- small helpers */

static char *pl_http_dup(const char *s)
{
    return s ? pl_strdup(s, PL_MEM_DATA) : NULL;
}

static void pl_http_free_list(char **v)
{
    if (!v) return;
    for (char **p = v; *p; p++) pl_free(*p);
    pl_free(v);
}

/* a NULL-terminated copy of name, value, ..., NULL */
static char **pl_http_copy_list(const char *const *v)
{
    int n = 0;
    while (v && v[n]) n++;
    char **c = pl_calloc((size_t)n + 1, sizeof *c, PL_MEM_DATA);
    if (!c) return NULL;
    for (int i = 0; i < n; i++)
        if (!(c[i] = pl_http_dup(v[i]))) { pl_http_free_list(c); return NULL; }
    return c;
}

static void pl_http_deadline(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

/* The client closed its end (EOF or error on the socket), without consuming anything. */
static int pl_http_peer_gone(int fd)
{
    if (fd < 0) return 0;
#ifdef POLLRDHUP
    struct pollfd p = { fd, POLLIN | POLLRDHUP, 0 };
#else
    struct pollfd p = { fd, POLLIN, 0 };
#endif
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return 1;
#ifdef POLLRDHUP
    if (p.revents & POLLRDHUP) return 1;
#endif
    if (p.revents & POLLIN) {
        char b;
        ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0) return 1;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1;
    }
    return 0;
}

char *pl_http_error_json(const char *message, const char *type, const char *code)
{
    struct pl_json *root = pl_json_new_object();
    if (!root) return NULL;
    struct pl_json *e = pl_json_add_object(root, "error");
    if (e) {
        /* the message may quote the client's bytes: keep the JSON valid UTF-8 */
        size_t n = strlen(message), k = 0;
        char *m = pl_alloc(n * 3 + 1, PL_MEM_DATA);
        if (m) {
            for (size_t i = 0; i < n;) {
                int l = pl_utf8_seq(message + i, n - i);
                if (l) { memcpy(m + k, message + i, (size_t)l); k += (size_t)l; i += (size_t)l; }
                else { memcpy(m + k, "\xEF\xBF\xBD", 3); k += 3; i++; }
            }
            m[k] = 0;
        }
        pl_json_add_str(e, "message", m ? m : "error");
        pl_free(m);
        pl_json_add_str(e, "type", type);
        if (code) pl_json_add_str(e, "code", code); else pl_json_add_null(e, "code");
        pl_json_add_null(e, "param");
    }
    char *s = pl_json_print(root, 0);
    pl_json_free(root);
    return s;
}

/* ---------------------------------------------------------------- server */

enum pl_status pl_http_new(struct pl_http_server **out, const struct pl_http_opts *o)
{
    *out = NULL;
    struct pl_http_opts d = { 0 };
    if (!o) o = &d;
    if (o->port < 0 || o->port > 65535)
        return pl_fail(PL_ERR_ARG, "http: port %d is not in 0..65535", o->port);
    if (o->token && !o->token[0]) return pl_fail(PL_ERR_ARG, "http: the token is empty");
    struct pl_http_server *s = pl_calloc(1, sizeof *s, PL_MEM_DATA);
    if (!s) return pl_fail(PL_ERR_NOMEM, "http: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->json_mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    s->refs = 1;
    s->listen_fd = -1;
    s->port = o->port;
    s->host = pl_http_dup(o->host ? o->host : "127.0.0.1");
    s->token = pl_http_dup(o->token);
    s->token_cookie = pl_http_dup(o->token_cookie);
    s->hdrs = pl_http_copy_list(o->headers);
    s->max_body = o->max_body ? o->max_body : (size_t)1 << 20;
    s->max_queue = o->max_queue > 0 ? o->max_queue : 64;
    s->max_conn = o->max_connections > 0 ? o->max_connections : 64;
    s->idle_s = o->idle_timeout_s ? o->idle_timeout_s : 60;
    if (!s->host || !s->hdrs || (o->token && !s->token) || (o->token_cookie && !s->token_cookie)) {
        pl_http_close(s);
        return pl_fail(PL_ERR_NOMEM, "http: out of memory");
    }
    *out = s;
    return PL_OK;
}

static int pl_http_method_ok(const char *m)
{
    if (!m || !*m) return 0;
    for (const char *p = m; *p; p++) if (*p < 'A' || *p > 'Z') return 0;
    return 1;
}

static enum pl_status pl_http_add(struct pl_http_server *s, const char *method, const char *path,
                                  unsigned flags, int kind, struct pl_http_route_def **out)
{
    if (!pl_http_method_ok(method)) return pl_fail(PL_ERR_ARG, "http: bad method '%s'", method ? method : "");
    if (!path || path[0] != '/') return pl_fail(PL_ERR_ARG, "http: a route's path must start with '/'");
    if (flags & ~(PL_HTTP_AUTH | PL_HTTP_PREFIX)) return pl_fail(PL_ERR_ARG, "http: unknown route flags");
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].method, method) == 0 && strcmp(s->routes[i].path, path) == 0) {
            int same = s->routes[i].kind == kind;
            pthread_mutex_unlock(&s->mu);
            if (!same || kind != ROUTE_FIXED)
                return pl_fail(PL_ERR_ARG, "http: %s %s is already routed", method, path);
            *out = &s->routes[i];
            return PL_OK;
        }
    if (s->nroutes == PL_HTTP_MAX_ROUTES || (s->started && kind != ROUTE_FIXED)) {
        pthread_mutex_unlock(&s->mu);
        return pl_fail(PL_ERR_STATE, s->started ? "http: routes are added before start (fixed responses may change)"
                                                : "http: at most %d routes", PL_HTTP_MAX_ROUTES);
    }
    struct pl_http_route_def *r = &s->routes[s->nroutes];
    memset(r, 0, sizeof *r);
    r->method = pl_http_dup(method);
    r->path = pl_http_dup(path);
    if (!r->method || !r->path) {
        pl_free(r->method); pl_free(r->path);
        pthread_mutex_unlock(&s->mu);
        return pl_fail(PL_ERR_NOMEM, "http: out of memory");
    }
    r->plen = strlen(path);
    r->flags = flags;
    r->kind = kind;
    s->nroutes++;   /* published last: connection threads read routes[0..nroutes) */
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return PL_OK;
}

enum pl_status pl_http_route(struct pl_http_server *s, const char *method, const char *path,
                             unsigned flags, enum pl_http_body body, size_t max_body,
                             const char *spool)
{
    if (body == PL_HTTP_BODY_FILE) {
        struct stat st;
        if (!spool || stat(spool, &st) != 0 || !S_ISDIR(st.st_mode))
            return pl_fail(PL_ERR_IO, "http: %s %s: the spool directory '%s' does not exist", method, path,
                           spool ? spool : "(none)");
    }
    if (body > PL_HTTP_BODY_FILE) return pl_fail(PL_ERR_ARG, "http: unknown body kind");
    char *dir = NULL;
    if (spool && !(dir = pl_http_dup(spool))) return pl_fail(PL_ERR_NOMEM, "http: out of memory");
    struct pl_http_route_def *r;
    enum pl_status st = pl_http_add(s, method, path, flags, ROUTE_QUEUE, &r);
    if (st != PL_OK) { pl_free(dir); return st; }
    r->body = body;
    r->max_body = max_body ? max_body : s->max_body;
    r->dir = dir;
    return PL_OK;
}

enum pl_status pl_http_static(struct pl_http_server *s, const char *prefix, const char *dir,
                              unsigned flags)
{
    char real[PATH_MAX];
    if (!dir || !realpath(dir, real))
        return pl_fail(PL_ERR_IO, "http: static directory '%s': %s", dir ? dir : "(none)", strerror(errno));
    char *d = pl_http_dup(real);
    if (!d) return pl_fail(PL_ERR_NOMEM, "http: out of memory");
    struct pl_http_route_def *r;
    enum pl_status st = pl_http_add(s, "GET", prefix, flags | PL_HTTP_PREFIX, ROUTE_STATIC, &r);
    if (st != PL_OK) { pl_free(d); return st; }
    r->dir = d;
    return PL_OK;
}

enum pl_status pl_http_fixed(struct pl_http_server *s, const char *method, const char *path,
                             unsigned flags, int status, const char *content_type,
                             const char *body, size_t n)
{
    if (status < 100 || status > 599) return pl_fail(PL_ERR_ARG, "http: status %d is not in 100..599", status);
    char *b = pl_alloc(n + 1, PL_MEM_DATA);
    char *ct = pl_http_dup(content_type ? content_type : "application/json");
    if (!b || !ct) { pl_free(b); pl_free(ct); return pl_fail(PL_ERR_NOMEM, "http: out of memory"); }
    if (n) memcpy(b, body, n);
    b[n] = 0;
    struct pl_http_route_def *r;
    enum pl_status st = pl_http_add(s, method, path, flags, ROUTE_FIXED, &r);
    if (st != PL_OK) { pl_free(b); pl_free(ct); return st; }
    pthread_mutex_lock(&s->mu);
    pl_free(r->fbody);
    pl_free(r->ctype);
    r->fbody = b;
    r->fn = n;
    r->ctype = ct;
    r->status = status;
    pthread_mutex_unlock(&s->mu);
    return PL_OK;
}

int pl_http_port(const struct pl_http_server *s) { return s->port; }

int pl_http_queued(struct pl_http_server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->qn;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void pl_http_server_unref(struct pl_http_server *s)
{
    pthread_mutex_lock(&s->mu);
    int left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left) return;
    for (int i = 0; i < s->nroutes; i++) {
        struct pl_http_route_def *r = &s->routes[i];
        pl_free(r->method); pl_free(r->path); pl_free(r->dir); pl_free(r->ctype); pl_free(r->fbody);
    }
    pl_free(s->host); pl_free(s->token); pl_free(s->token_cookie);
    pl_http_free_list(s->hdrs);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->json_mu);
    pthread_mutex_destroy(&s->mu);
    pl_free(s);
}

/* ---------------------------------------------------------------- requests */

static void pl_http_req_unref(struct pl_http_req *r)
{
    struct pl_http_server *s = r->s;
    pthread_mutex_lock(&s->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&s->mu);
    if (left) return;
    pl_free(r->method); pl_free(r->path);
    for (int i = 0; i < 2 * r->nhdr; i++) pl_free(r->hdr[i]);
    for (int i = 0; i < 2 * r->nqry; i++) pl_free(r->qry[i]);
    pl_free(r->hdr); pl_free(r->qry);
    pl_free(r->body);
    if (r->body_fd >= 0) close(r->body_fd);
    if (r->body_path) { unlink(r->body_path); pl_free(r->body_path); }   /* unless moved */
    pl_json_free(r->json);
    pl_http_free_list(r->rhdr);
    pl_free(r->rbody);
    pl_free(r->out);
    pthread_cond_destroy(&r->cv);
    pl_free(r);
    pl_http_server_unref(s);
}

static struct pl_http_req *pl_http_req_new(struct pl_http_server *s, const char *method, const char *url)
{
    struct pl_http_req *r = pl_calloc(1, sizeof *r, PL_MEM_DATA);
    if (!r) return NULL;
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->fd = -1;
    r->body_fd = -1;
    r->method = pl_http_dup(method);
    r->path = pl_http_dup(url);
    pthread_mutex_lock(&s->mu);
    r->s = s;
    s->refs++;
    r->id = ++s->next_id;
    pthread_mutex_unlock(&s->mu);
    if (!r->method || !r->path) { pl_http_req_unref(r); return NULL; }
    return r;
}

uint64_t    pl_http_req_id(const struct pl_http_req *r) { return r->id; }
const char *pl_http_req_method(const struct pl_http_req *r) { return r->method; }
const char *pl_http_req_path(const struct pl_http_req *r) { return r->path; }
const char *pl_http_req_body_path(const struct pl_http_req *r) { return r->body_path; }
size_t      pl_http_req_body_size(const struct pl_http_req *r) { return r->body_n; }
const struct pl_json *pl_http_req_json(const struct pl_http_req *r) { return r->json; }

const char *pl_http_req_body(const struct pl_http_req *r, size_t *n)
{
    if (n) *n = r->body ? r->body_n : 0;
    return r->body;
}

const char *pl_http_req_header(const struct pl_http_req *r, const char *name)
{
    for (int i = 0; i < r->nhdr; i++)
        if (strcasecmp(r->hdr[2 * i], name) == 0) return r->hdr[2 * i + 1];
    return NULL;
}

const char *pl_http_req_query(const struct pl_http_req *r, const char *name)
{
    for (int i = 0; i < r->nqry; i++)
        if (strcmp(r->qry[2 * i], name) == 0) return r->qry[2 * i + 1];
    return NULL;
}

const char *pl_http_req_header_at(const struct pl_http_req *r, int i, const char **value)
{
    if (i < 0 || i >= r->nhdr) return NULL;
    if (value) *value = r->hdr[2 * i + 1];
    return r->hdr[2 * i];
}

const char *pl_http_req_query_at(const struct pl_http_req *r, int i, const char **value)
{
    if (i < 0 || i >= r->nqry) return NULL;
    if (value) *value = r->qry[2 * i + 1];
    return r->qry[2 * i];
}

int pl_http_req_gone(struct pl_http_req *r)
{
    pthread_mutex_lock(&r->s->mu);
    int g = r->gone || r->s->stopping;
    pthread_mutex_unlock(&r->s->mu);
    return g;
}

/* under s->mu */
static enum pl_status pl_http_answer_locked(struct pl_http_req *r, int state, int status,
                                            const char *const *headers, const char *body, size_t n)
{
    if (r->state != RQ_TAKEN)
        return pl_fail(PL_ERR_STATE, "http: request %llu was already answered", (unsigned long long)r->id);
    if (status < 100 || status > 599) return pl_fail(PL_ERR_ARG, "http: status %d is not in 100..599", status);
    if (headers) {
        int k = 0;
        while (headers[k]) k++;
        if (k % 2) return pl_fail(PL_ERR_ARG, "http: headers come as name, value pairs");
        for (int i = 0; i < k; i++)
            if (strpbrk(headers[i], "\r\n") || (i % 2 == 0 && (!headers[i][0] || strchr(headers[i], ':'))))
                return pl_fail(PL_ERR_ARG, "http: bad header '%s'", headers[i]);
    }
    if (r->gone) { r->state = RQ_DONE; return PL_OK; }   /* nobody to tell */
    char **h = pl_http_copy_list(headers);
    char *b = NULL;
    if (state == RQ_WHOLE) {
        b = pl_alloc(n + 1, PL_MEM_DATA);
        if (b) { if (n) memcpy(b, body, n); b[n] = 0; }
    }
    if (!h || (state == RQ_WHOLE && !b)) {
        pl_http_free_list(h); pl_free(b);
        return pl_fail(PL_ERR_NOMEM, "http: out of memory");
    }
    r->rhdr = h;
    r->rbody = b;
    r->rbody_n = n;
    r->status = status;
    r->state = state;
    pthread_cond_broadcast(&r->cv);
    return PL_OK;
}

enum pl_status pl_http_respond(struct pl_http_req *r, int status, const char *const *headers,
                               const char *body, size_t n)
{
    pthread_mutex_lock(&r->s->mu);
    enum pl_status st = pl_http_answer_locked(r, RQ_WHOLE, status, headers, body ? body : "", body ? n : 0);
    pthread_mutex_unlock(&r->s->mu);
    return st;
}

enum pl_status pl_http_respond_error(struct pl_http_req *r, int status, const char *message,
                                     const char *type, const char *code)
{
    char *b = pl_http_error_json(message, type, code);
    if (!b) return pl_fail(PL_ERR_NOMEM, "http: out of memory");
    static const char *const h[] = { "Content-Type", "application/json", NULL };
    enum pl_status st = pl_http_respond(r, status, h, b, strlen(b));
    pl_free(b);
    return st;
}

enum pl_status pl_http_stream_start(struct pl_http_req *r, int status, const char *const *headers)
{
    pthread_mutex_lock(&r->s->mu);
    enum pl_status st = pl_http_answer_locked(r, RQ_STREAM, status, headers, NULL, 0);
    pthread_mutex_unlock(&r->s->mu);
    return st;
}

enum pl_status pl_http_stream_write(struct pl_http_req *r, const char *data, size_t n)
{
    struct pl_http_server *s = r->s;
    enum pl_status st = PL_OK;
    pthread_mutex_lock(&s->mu);
    if (r->gone || s->stopping || r->state == RQ_DONE) st = pl_fail(PL_ERR_IO, "http: the client has gone");
    else if (r->state != RQ_STREAM || r->ended) st = pl_fail(PL_ERR_STATE, "http: request %llu is not streaming", (unsigned long long)r->id);
    else if (n) {
        if (r->out_off && r->out_off == r->out_len) r->out_off = r->out_len = 0;
        if (r->out_len - r->out_off + n > PL_HTTP_MAX_PENDING) {
            r->gone = 1;   /* the client stopped reading */
            st = pl_fail(PL_ERR_IO, "http: the client stopped reading (%zu bytes pending)", r->out_len - r->out_off);
        } else {
            if (r->out_len + n > r->out_cap) {
                if (r->out_off) {   /* compact first */
                    memmove(r->out, r->out + r->out_off, r->out_len - r->out_off);
                    r->out_len -= r->out_off;
                    r->out_off = 0;
                }
                size_t cap = r->out_cap ? r->out_cap : 4096;
                while (cap < r->out_len + n) cap *= 2;
                if (cap != r->out_cap) {
                    char *o = r->out ? pl_realloc(r->out, cap) : pl_alloc(cap, PL_MEM_DATA);
                    if (!o) st = pl_fail(PL_ERR_NOMEM, "http: out of memory");
                    else { r->out = o; r->out_cap = cap; }
                }
            }
            if (st == PL_OK) {
                memcpy(r->out + r->out_len, data, n);
                r->out_len += n;
                pthread_cond_broadcast(&r->cv);
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

void pl_http_stream_end(struct pl_http_req *r)
{
    pthread_mutex_lock(&r->s->mu);
    r->ended = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->s->mu);
}

void pl_http_req_release(struct pl_http_req *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->s->mu);
    int unanswered = r->state == RQ_TAKEN;
    if (r->state == RQ_STREAM && !r->ended) { r->ended = 1; pthread_cond_broadcast(&r->cv); }
    pthread_mutex_unlock(&r->s->mu);
    if (unanswered)
        pl_http_respond_error(r, 500, "the server dropped the request without answering", "server_error", NULL);
    pl_http_req_unref(r);
}

enum pl_status pl_http_next(struct pl_http_server *s, int timeout_ms, struct pl_http_req **out)
{
    *out = NULL;
    struct timespec end;
    if (timeout_ms >= 0) pl_http_deadline(&end, timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (!s->qhead) {
        if (pl_interrupt_pending() || s->stopping) {
            pthread_mutex_unlock(&s->mu);
            return s->stopping ? pl_fail(PL_ERR_STATE, "http: the server is closed") : pl_interrupt_check();
        }
        struct timespec slice;
        pl_http_deadline(&slice, 100);   /* Ctrl-C is noticed within 100 ms */
        if (timeout_ms >= 0 && (slice.tv_sec > end.tv_sec || (slice.tv_sec == end.tv_sec && slice.tv_nsec > end.tv_nsec)))
            slice = end;
        int rc = pthread_cond_timedwait(&s->work_cv, &s->mu, &slice);
        if (rc == ETIMEDOUT && timeout_ms >= 0 && !s->qhead) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec)) {
                pthread_mutex_unlock(&s->mu);
                return PL_OK;
            }
        }
    }
    struct pl_http_req *r = s->qhead;
    s->qhead = r->next;
    if (!s->qhead) s->qtail = NULL;
    s->qn--;
    r->next = NULL;
    r->state = RQ_TAKEN;
    r->refs++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return PL_OK;
}

/* under s->mu */
static void pl_http_unqueue(struct pl_http_server *s, struct pl_http_req *r)
{
    struct pl_http_req **p = &s->qhead, *prev = NULL;
    while (*p && *p != r) { prev = *p; p = &(*p)->next; }
    if (!*p) return;
    *p = r->next;
    if (s->qtail == r) s->qtail = prev;
    s->qn--;
    r->next = NULL;
}

/* ---------------------------------------------------------------- the MHD side */

static enum MHD_Result pl_http_send(struct pl_http_server *s, struct MHD_Connection *c, int status,
                                    const char *ctype, const char *body, size_t n,
                                    const char *const *extra)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    for (char **h = s->hdrs; h && h[0] && h[1]; h += 2) MHD_add_response_header(resp, h[0], h[1]);
    if (ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    for (const char *const *h = extra; h && h[0] && h[1]; h += 2) MHD_add_response_header(resp, h[0], h[1]);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result pl_http_send_error(struct pl_http_server *s, struct MHD_Connection *c, int status,
                                          const char *msg, const char *type, const char *code,
                                          const char *const *extra)
{
    char *b = pl_http_error_json(msg, type, code);
    if (!b) return MHD_NO;
    enum MHD_Result ret = pl_http_send(s, c, status, "application/json", b, strlen(b), extra);
    pl_free(b);
    return ret;
}

static void pl_http_conn_error(struct pl_http_conn *k, int status, const char *type, const char *code,
                               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void pl_http_conn_error(struct pl_http_conn *k, int status, const char *type, const char *code,
                               const char *fmt, ...)
{
    if (k->err_status) return;   /* the first error stands */
    k->err_status = status;
    k->err_type = type;
    k->err_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->err_msg, sizeof k->err_msg, fmt, ap);
    va_end(ap);
}

static int pl_http_path_match(const struct pl_http_route_def *r, const char *url)
{
    if (r->flags & PL_HTTP_PREFIX) {
        if (strncmp(url, r->path, r->plen) == 0) return 1;
        /* "/ui/" also matches "/ui" */
        return r->plen > 1 && r->path[r->plen - 1] == '/' && strlen(url) == r->plen - 1 &&
               strncmp(url, r->path, r->plen - 1) == 0;
    }
    return strcmp(url, r->path) == 0;
}

static int pl_http_token_eq(const char *a, const char *b, size_t bn)
{
    size_t an = strlen(a);
    unsigned char d = (unsigned char)(an != bn);
    for (size_t i = 0; i < bn; i++) d |= (unsigned char)(a[i % (an ? an : 1)] ^ b[i]);
    return d == 0 && an == bn;
}

static int pl_http_authorized(struct pl_http_server *s, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *t = h + 7;
        while (*t == ' ') t++;
        size_t n = strlen(t);
        while (n && t[n - 1] == ' ') n--;
        if (pl_http_token_eq(s->token, t, n)) return 1;
    }
    if (s->token_cookie) {
        const char *v = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, s->token_cookie);
        if (v && pl_http_token_eq(s->token, v, strlen(v))) return 1;
    }
    return 0;
}

struct pl_http_kv { char **v; int n, cap, fail; };

static enum MHD_Result pl_http_collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct pl_http_kv *kv = cls;
    if (kv->fail || !key) return MHD_YES;
    if (kv->n == kv->cap) {
        int cap = kv->cap ? kv->cap * 2 : 16;
        char **v = kv->v ? pl_realloc(kv->v, (size_t)cap * 2 * sizeof *v) : pl_alloc((size_t)cap * 2 * sizeof *v, PL_MEM_DATA);
        if (!v) { kv->fail = 1; return MHD_NO; }
        kv->v = v;
        kv->cap = cap;
    }
    kv->v[2 * kv->n] = pl_http_dup(key);
    kv->v[2 * kv->n + 1] = pl_http_dup(value ? value : "");
    if (!kv->v[2 * kv->n] || !kv->v[2 * kv->n + 1]) {
        pl_free(kv->v[2 * kv->n]); pl_free(kv->v[2 * kv->n + 1]);
        kv->fail = 1;
        return MHD_NO;
    }
    kv->n++;
    return MHD_YES;
}

/* The first call for a request: its headers are in. Route, check the token and the size. */
static void pl_http_begin(struct pl_http_server *s, struct MHD_Connection *c, struct pl_http_conn *k,
                          const char *url, const char *method)
{
    int path_seen = 0;
    pthread_mutex_lock(&s->mu);
    int n = s->nroutes;   /* entries below n are complete and never move */
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n && !k->route; i++) {
        struct pl_http_route_def *r = &s->routes[i];
        if (!pl_http_path_match(r, url)) continue;
        path_seen = 1;
        if (strcmp(r->method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0 && r->kind != ROUTE_QUEUE))
            k->route = r;
    }
    if (!k->route) {
        if (path_seen) {
            pl_http_conn_error(k, 405, "invalid_request_error", "method_not_allowed",
                               "%s is not allowed on %s", method, url);
        } else
            pl_http_conn_error(k, 404, "invalid_request_error", "not_found", "no route for %s %s", method, url);
        k->limit = s->max_body;   /* read what is sent, then answer */
        return;
    }
    struct pl_http_route_def *r = k->route;
    k->limit = r->kind == ROUTE_QUEUE && r->body != PL_HTTP_BODY_NONE ? r->max_body : 0;
    if ((r->flags & PL_HTTP_AUTH) && s->token && !pl_http_authorized(s, c))
        pl_http_conn_error(k, 401, "authentication_error", "invalid_api_key",
                           "missing or incorrect API key (send Authorization: Bearer <key>)");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && v > k->limit) {
            if (k->limit)
                pl_http_conn_error(k, 413, "invalid_request_error", "request_too_large",
                                   "request body of %llu bytes is over the limit of %zu bytes", v, k->limit);
            else
                pl_http_conn_error(k, 413, "invalid_request_error", "request_too_large",
                                   "%s %s takes no body", method, url);
        }
    }
    if (k->err_status || r->kind != ROUTE_QUEUE) return;
    if (r->body == PL_HTTP_BODY_JSON) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        size_t jl = strlen("application/json");
        if (!ct || strncasecmp(ct, "application/json", jl) != 0 || (ct[jl] && ct[jl] != ';' && ct[jl] != ' ')) {
            pl_http_conn_error(k, 415, "invalid_request_error", "unsupported_media_type",
                               "the body must be JSON (Content-Type: application/json), not %s", ct ? ct : "untyped");
            return;
        }
    }
    struct pl_http_req *q = pl_http_req_new(s, method, url);
    if (!q) { pl_http_conn_error(k, 500, "server_error", NULL, "out of memory"); return; }
    k->r = q;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    q->fd = ci ? ci->connect_fd : -1;
    struct pl_http_kv h = { 0 }, a = { 0 };
    MHD_get_connection_values(c, MHD_HEADER_KIND, pl_http_collect, &h);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, pl_http_collect, &a);
    q->hdr = h.v; q->nhdr = h.n;
    q->qry = a.v; q->nqry = a.n;
    if (h.fail || a.fail) { pl_http_conn_error(k, 500, "server_error", NULL, "out of memory"); return; }
    if (r->body == PL_HTTP_BODY_FILE) {
        size_t dl = strlen(r->dir);
        q->body_path = pl_alloc(dl + 32, PL_MEM_DATA);
        if (!q->body_path) { pl_http_conn_error(k, 500, "server_error", NULL, "out of memory"); return; }
        snprintf(q->body_path, dl + 32, "%s/upload-XXXXXX", r->dir);
        q->body_fd = mkstemp(q->body_path);
        if (q->body_fd < 0) {
            pl_free(q->body_path);
            q->body_path = NULL;
            pl_http_conn_error(k, 500, "server_error", NULL, "cannot create a file in the spool directory");
        }
    }
}

/* Body bytes: kept, written to the spool file, or (after an error) counted and dropped. */
static int pl_http_take(struct pl_http_conn *k, const char *data, size_t n)
{
    k->seen += n;
    if (!k->err_status && k->seen > k->limit) {
        if (k->limit)
            pl_http_conn_error(k, 413, "invalid_request_error", "request_too_large",
                               "request body is over the limit of %zu bytes", k->limit);
        else
            pl_http_conn_error(k, 413, "invalid_request_error", "request_too_large", "this route takes no body");
    }
    if (k->err_status) {
        size_t cap = k->limit * 4 > ((size_t)64 << 20) ? k->limit * 4 : (size_t)64 << 20;
        return k->seen <= cap;   /* beyond that, hang up rather than read on */
    }
    struct pl_http_req *q = k->r;
    if (q->body_fd >= 0) {
        while (n) {
            ssize_t w = write(q->body_fd, data, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                pl_http_conn_error(k, 500, "server_error", NULL, "cannot write the upload: %s", strerror(errno));
                return 1;
            }
            data += w;
            n -= (size_t)w;
            q->body_n += (size_t)w;
        }
        return 1;
    }
    if (q->body_n + n + 1 > q->body_cap) {
        size_t cap = q->body_cap ? q->body_cap : 4096;
        while (cap < q->body_n + n + 1) cap *= 2;
        char *b = q->body ? pl_realloc(q->body, cap) : pl_alloc(cap, PL_MEM_DATA);
        if (!b) { pl_http_conn_error(k, 500, "server_error", NULL, "out of memory"); return 1; }
        q->body = b;
        q->body_cap = cap;
    }
    memcpy(q->body + q->body_n, data, n);
    q->body_n += n;
    q->body[q->body_n] = 0;
    return 1;
}

static const char *pl_http_mime(const char *path)
{
    static const char *const types[] = {
        ".html", "text/html; charset=utf-8", ".htm", "text/html; charset=utf-8",
        ".css", "text/css; charset=utf-8", ".js", "text/javascript; charset=utf-8",
        ".json", "application/json", ".svg", "image/svg+xml", ".png", "image/png",
        ".jpg", "image/jpeg", ".ico", "image/x-icon", ".txt", "text/plain; charset=utf-8",
        ".jsonl", "application/x-ndjson", ".gguf", "application/octet-stream",
        ".safetensors", "application/octet-stream", NULL
    };
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (int i = 0; types[i]; i += 2) if (strcasecmp(dot, types[i]) == 0) return types[i + 1];
    return "application/octet-stream";
}

static enum MHD_Result pl_http_static_file(struct pl_http_server *s, struct MHD_Connection *c,
                                           const struct pl_http_route_def *r, const char *url)
{
    const char *rest = url + (strlen(url) >= r->plen ? r->plen : strlen(url));
    while (*rest == '/') rest++;
    char rel[PATH_MAX];
    int rn = snprintf(rel, sizeof rel, "%s%s", rest, (!*rest || rest[strlen(rest) - 1] == '/') ? "index.html" : "");
    if (rn < 0 || (size_t)rn >= sizeof rel) goto notfound;
    /* no "." or ".." segment, no backslash, no empty segment */
    for (const char *p = rel; *p;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.')) goto notfound;
        p += l + (e ? 1 : 0);
    }
    if (strchr(rel, '\\')) goto notfound;
    char full[PATH_MAX], real[PATH_MAX];
    if (snprintf(full, sizeof full, "%s/%s", r->dir, rel) >= (int)sizeof full) goto notfound;
    if (!realpath(full, real)) goto notfound;
    size_t dl = strlen(r->dir);
    if (strncmp(real, r->dir, dl) != 0 || real[dl] != '/') goto notfound;   /* a symlink out */
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) goto notfound;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); goto notfound; }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) { close(fd); return MHD_NO; }
    for (char **h = s->hdrs; h && h[0] && h[1]; h += 2) MHD_add_response_header(resp, h[0], h[1]);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, pl_http_mime(real));
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
notfound:
    return pl_http_send_error(s, c, 404, "no such file", "invalid_request_error", "not_found", NULL);
}

static ssize_t pl_http_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct pl_http_req *r = cls;
    struct pl_http_server *s = r->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (r->out_off < r->out_len) {
            size_t n = r->out_len - r->out_off;
            if (n > max) n = max;
            memcpy(buf, r->out + r->out_off, n);
            r->out_off += n;
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (r->ended) { pthread_mutex_unlock(&s->mu); return MHD_CONTENT_READER_END_OF_STREAM; }
        if (r->gone || s->stopping) { r->gone = 1; pthread_mutex_unlock(&s->mu); return MHD_CONTENT_READER_END_WITH_ERROR; }
        struct timespec ts;
        pl_http_deadline(&ts, PL_HTTP_WAIT_MS);
        if (pthread_cond_timedwait(&r->cv, &s->mu, &ts) == ETIMEDOUT && pl_http_peer_gone(r->fd)) r->gone = 1;
    }
}

static void pl_http_reader_free(void *cls) { pl_http_req_unref(cls); }

/* The last call: the body is in. Answer errors and the connection threads' own routes; queue
 * the rest for the worker and wait for its answer. */
static enum MHD_Result pl_http_finish(struct pl_http_server *s, struct MHD_Connection *c,
                                      struct pl_http_conn *k, const char *url)
{
    const struct pl_http_route_def *rt = k->route;
    struct pl_http_req *r = k->r;
    if (!k->err_status && rt && rt->kind == ROUTE_QUEUE && rt->body == PL_HTTP_BODY_JSON) {
        if (!r->body || r->body_n == 0)
            pl_http_conn_error(k, 400, "invalid_request_error", "invalid_json", "the request body is empty");
        else {
            size_t bad = pl_utf8_valid(r->body, r->body_n);
            if (bad < r->body_n)
                pl_http_conn_error(k, 400, "invalid_request_error", "invalid_utf8",
                                   "the body is not UTF-8 (byte %zu, 0x%02x)", bad, (unsigned char)r->body[bad]);
            else {
                pthread_mutex_lock(&s->json_mu);
                r->json = pl_json_parse(r->body, r->body_n, "request body");
                if (!r->json)
                    pl_http_conn_error(k, 400, "invalid_request_error", "invalid_json", "%s", pl_last_error());
                pthread_mutex_unlock(&s->json_mu);
                if (r->json && pl_json_type(r->json) != PL_JSON_OBJECT)
                    pl_http_conn_error(k, 400, "invalid_request_error", "invalid_json", "the request body must be a JSON object");
            }
        }
    }
    if (k->err_status) {
        const char *extra[5] = { 0 };
        int e = 0;
        if (k->err_status == 401) { extra[e++] = "WWW-Authenticate"; extra[e++] = "Bearer"; }
        return pl_http_send_error(s, c, k->err_status, k->err_msg, k->err_type, k->err_code, extra);
    }
    if (rt->kind == ROUTE_FIXED) {
        pthread_mutex_lock(&s->mu);
        int status = rt->status;
        size_t n = rt->fn;
        char *b = pl_alloc(n + 1, PL_MEM_DATA), *ct = pl_http_dup(rt->ctype);
        if (b) memcpy(b, rt->fbody, n + 1);
        pthread_mutex_unlock(&s->mu);
        enum MHD_Result ret = b && ct ? pl_http_send(s, c, status, ct, b, n, NULL) : MHD_NO;
        pl_free(b);
        pl_free(ct);
        return ret;
    }
    if (rt->kind == ROUTE_STATIC) return pl_http_static_file(s, c, rt, url);

    if (r->body_fd >= 0) { close(r->body_fd); r->body_fd = -1; }
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->qn >= s->max_queue) {
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        static const char *const retry[] = { "Retry-After", "1", NULL };
        return pl_http_send_error(s, c, 503, stopping ? "the server is shutting down" : "too many requests are waiting; try again",
                                  "server_error", "queue_full", retry);
    }
    r->state = RQ_QUEUED;
    if (s->qtail) s->qtail->next = r; else s->qhead = r;
    s->qtail = r;
    s->qn++;
    pthread_cond_signal(&s->work_cv);
    while (r->state == RQ_QUEUED || r->state == RQ_TAKEN) {
        if (s->stopping) {
            if (r->state == RQ_QUEUED) pl_http_unqueue(s, r);
            r->gone = 1;
            r->state = RQ_DONE;
            pthread_mutex_unlock(&s->mu);
            return pl_http_send_error(s, c, 503, "the server is shutting down", "server_error", NULL, NULL);
        }
        struct timespec ts;
        pl_http_deadline(&ts, PL_HTTP_WAIT_MS);
        if (pthread_cond_timedwait(&r->cv, &s->mu, &ts) == ETIMEDOUT && pl_http_peer_gone(r->fd)) {
            /* the client hung up before its turn came, or while the worker works on it */
            if (r->state == RQ_QUEUED) { pl_http_unqueue(s, r); r->state = RQ_DONE; }
            r->gone = 1;
            pthread_mutex_unlock(&s->mu);
            return MHD_NO;
        }
    }
    int state = r->state;
    pthread_mutex_unlock(&s->mu);
    if (state == RQ_DONE) return MHD_NO;   /* answered after the client went */
    struct MHD_Response *resp;
    if (state == RQ_WHOLE)
        resp = MHD_create_response_from_buffer(r->rbody_n, r->rbody, MHD_RESPMEM_MUST_COPY);
    else {
        pthread_mutex_lock(&s->mu);
        r->refs++;   /* the reader's */
        pthread_mutex_unlock(&s->mu);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, pl_http_reader, r, pl_http_reader_free);
        if (!resp) pl_http_req_unref(r);
    }
    if (!resp) return MHD_NO;
    for (char **h = s->hdrs; h && h[0] && h[1]; h += 2) MHD_add_response_header(resp, h[0], h[1]);
    int has_ct = 0;
    for (char **h = r->rhdr; h && h[0] && h[1]; h += 2) {
        if (strcasecmp(h[0], MHD_HTTP_HEADER_CONTENT_TYPE) == 0) has_ct = 1;
        MHD_add_response_header(resp, h[0], h[1]);
    }
    if (!has_ct) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result pl_http_handler(void *cls, struct MHD_Connection *c, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct pl_http_server *s = cls;
    struct pl_http_conn *k = *con_cls;
    if (!k) {
        k = pl_calloc(1, sizeof *k, PL_MEM_DATA);
        if (!k) return MHD_NO;
        *con_cls = k;
        pl_http_begin(s, c, k, url, method);
        return MHD_YES;
    }
    if (*upload_size) {
        int more = pl_http_take(k, upload_data, *upload_size);
        *upload_size = 0;
        return more ? MHD_YES : MHD_NO;
    }
    return pl_http_finish(s, c, k, url);
}

static void pl_http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    (void)c;
    struct pl_http_server *s = cls;
    struct pl_http_conn *k = *con_cls;
    if (!k) return;
    *con_cls = NULL;
    if (k->r) {
        pthread_mutex_lock(&s->mu);
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) k->r->gone = 1;
        if (k->r->state == RQ_QUEUED) { pl_http_unqueue(s, k->r); k->r->state = RQ_DONE; }
        k->r->fd = -1;   /* the socket is MHD's to close and reuse */
        pthread_cond_broadcast(&k->r->cv);
        pthread_mutex_unlock(&s->mu);
        pl_http_req_unref(k->r);
    }
    pl_free(k);
}

enum pl_status pl_http_start(struct pl_http_server *s)
{
    if (s->started) return pl_fail(PL_ERR_STATE, "http: the server is already started");
    /* cJSON installs its allocator hooks on first use: do it on this thread, before any other */
    pl_json_free(pl_json_parse("{}", 2, NULL));
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    struct addrinfo hints = { 0 }, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(s->host, port, &hints, &ai);
    if (rc != 0) return pl_fail(PL_ERR_ARG, "http: cannot resolve host '%s': %s", s->host, gai_strerror(rc));
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int v6 = ai->ai_family == AF_INET6;
    if (fd < 0) { freeaddrinfo(ai); return pl_fail(PL_ERR_IO, "http: socket: %s", strerror(errno)); }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        freeaddrinfo(ai);
        close(fd);
        return pl_fail(PL_ERR_IO, "http: cannot listen on %s:%d: %s%s", s->host, s->port, strerror(e),
                       e == EADDRINUSE ? " (choose another --port)" : "");
    }
    freeaddrinfo(ai);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        s->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                  : ((struct sockaddr_in *)&sa)->sin_port);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, pl_http_handler, s,
                            MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->max_conn,
                            MHD_OPTION_CONNECTION_TIMEOUT, s->idle_s,
                            MHD_OPTION_NOTIFY_COMPLETED, pl_http_completed, s,
                            MHD_OPTION_END);
    if (!s->d) {
        close(fd);
        return pl_fail(PL_ERR_IO, "http: libmicrohttpd could not start on %s:%d", s->host, s->port);
    }
    s->listen_fd = fd;
    s->started = 1;
    return PL_OK;
}

void pl_http_close(struct pl_http_server *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    /* connection threads see s->stopping within PL_HTTP_WAIT_MS and finish */
    if (s->d) {
        /* take the listening socket back (closed here), then stop: MHD joins its threads */
        MHD_socket lfd = MHD_quiesce_daemon(s->d);
        if (lfd != MHD_INVALID_SOCKET) close(lfd);
        MHD_stop_daemon(s->d);
    } else if (s->listen_fd >= 0)
        close(s->listen_fd);
    s->d = NULL;
    s->listen_fd = -1;
    pl_http_server_unref(s);
}

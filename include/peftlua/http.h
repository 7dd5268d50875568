/* http.h — the HTTP layer (over libmicrohttpd, the one file that includes microhttpd.h is
 * src/net/http.c). One layer for every server peftlua runs: `peftlua serve` (the OpenAI-compatible
 * API, lua/peft/serve.lua) and the web UI.
 *
 * Threads. libmicrohttpd runs one thread per connection. Those threads do everything that
 * needs no model: match the route, check the token, enforce the body limit (a request over it
 * is read to the end and discarded, then answered 413, so clients see the status rather than a
 * reset), stream upload bodies to disk, check that a JSON body is UTF-8 and parses, serve static
 * files and fixed responses (/health), and answer errors. Requests that need the application
 * are put on one FIFO queue; one worker thread (the Lua main thread) takes them in order with
 * pl_http_next() and answers each whole (pl_http_respond) or as a stream of chunks
 * (pl_http_stream_*: server-sent events). While a request waits or streams, its connection's
 * thread watches the socket: a client that goes away is removed from the queue, or its stream
 * ends, and pl_http_req_gone() turns true so the worker stops generating for it.
 *
 * Errors the layer writes itself are JSON: {"error":{"message":..,"type":..,"code":..}}, the
 * shape OpenAI clients expect (type invalid_request_error / authentication_error /
 * server_error; code not_found, method_not_allowed, invalid_api_key, request_too_large,
 * unsupported_media_type, invalid_json, invalid_utf8, queue_full, ...).
 *
 *   struct pl_http_server *s;
 *   struct pl_http_opts o = { .port = 8080 };
 *   pl_http_new(&s, &o);
 *   pl_http_route(s, "POST", "/v1/completions", PL_HTTP_AUTH, PL_HTTP_BODY_JSON, 0, NULL);
 *   pl_http_fixed(s, "GET", "/health", 0, 200, "application/json", "{\"status\":\"ok\"}", 15);
 *   pl_http_start(s);
 *   for (;;) {
 *       struct pl_http_req *r;
 *       if (pl_http_next(s, 500, &r) != PL_OK) break;     // interrupted
 *       if (!r) continue;                                 // timeout
 *       pl_http_respond(r, 200, NULL, "{}", 2);
 *       pl_http_req_release(r);
 *   }
 *   pl_http_close(s);
 */
#ifndef PEFTLUA_HTTP_H
#define PEFTLUA_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include "peftlua/status.h"

struct pl_http_server;
struct pl_http_req;
struct pl_json;

struct pl_http_opts {
    const char *host;            /* address to bind; NULL: 127.0.0.1 */
    int port;                    /* 0: any free port (pl_http_port says which) */
    size_t max_body;             /* default body limit of a route, bytes (0: 1 MiB) */
    int max_queue;               /* requests waiting for the worker; more get 503 (0: 64) */
    int max_connections;         /* 0: 64 */
    unsigned idle_timeout_s;     /* an idle connection is closed after this (0: 60) */
    const char *token;           /* routes flagged PL_HTTP_AUTH need "Authorization: Bearer
                                  * <token>" (or the cookie below); NULL: no token */
    const char *token_cookie;    /* also accept the token from this cookie; NULL: header only */
    const char *const *headers;  /* added to every response: name, value, ..., NULL */
};

enum pl_http_body {
    PL_HTTP_BODY_NONE,   /* a body is refused (413) */
    PL_HTTP_BODY_JSON,   /* Content-Type application/json, UTF-8, parsed (400 otherwise) */
    PL_HTTP_BODY_RAW,    /* bytes in memory */
    PL_HTTP_BODY_FILE    /* streamed to a new file in the route's spool directory */
};

#define PL_HTTP_AUTH   1u   /* the route needs the token (when the server has one) */
#define PL_HTTP_PREFIX 2u   /* path matches itself and everything below it ("/ui/") */

/* A server, not yet listening. Routes are matched in the order they were added. */
enum pl_status pl_http_new(struct pl_http_server **out, const struct pl_http_opts *o);
/* A route whose requests go to the worker. max_body 0: the server's; spool: directory for
 * PL_HTTP_BODY_FILE bodies (the file is the request's; the worker moves or removes it). */
enum pl_status pl_http_route(struct pl_http_server *s, const char *method, const char *path,
                             unsigned flags, enum pl_http_body body, size_t max_body,
                             const char *spool);
/* Files under dir served at prefix (GET and HEAD) by the connection threads. Paths with "..",
 * or that resolve (symlinks included) outside dir, are refused with 404. */
enum pl_status pl_http_static(struct pl_http_server *s, const char *prefix, const char *dir,
                              unsigned flags);
/* A fixed response answered by the connection threads; calling it again for the same method
 * and path replaces the body (safe while serving). */
enum pl_status pl_http_fixed(struct pl_http_server *s, const char *method, const char *path,
                             unsigned flags, int status, const char *content_type,
                             const char *body, size_t n);
enum pl_status pl_http_start(struct pl_http_server *s);
int pl_http_port(const struct pl_http_server *s);
/* Requests waiting for the worker now. */
int pl_http_queued(struct pl_http_server *s);
/* The next request, oldest first. Waits up to timeout_ms (< 0: until one comes); *out NULL on
 * timeout. Returns PL_ERR_INTERRUPTED when pl_interrupt_request() was called (Ctrl-C). The
 * caller owns one reference: pl_http_req_release() it. */
enum pl_status pl_http_next(struct pl_http_server *s, int timeout_ms, struct pl_http_req **out);
/* Stop listening, end every open request (waiting ones get 503), drop the caller's reference.
 * Requests still held stay valid until released. */
void pl_http_close(struct pl_http_server *s);

/* ---- a request (valid until released) ---- */
uint64_t    pl_http_req_id(const struct pl_http_req *r);          /* 1, 2, ... per server */
const char *pl_http_req_method(const struct pl_http_req *r);
const char *pl_http_req_path(const struct pl_http_req *r);        /* decoded, without the query */
const char *pl_http_req_header(const struct pl_http_req *r, const char *name); /* case-insensitive */
const char *pl_http_req_query(const struct pl_http_req *r, const char *name);  /* a query argument */
/* Headers and query arguments by index (i from 0; NULL past the end). */
const char *pl_http_req_header_at(const struct pl_http_req *r, int i, const char **value);
const char *pl_http_req_query_at(const struct pl_http_req *r, int i, const char **value);
const char *pl_http_req_body(const struct pl_http_req *r, size_t *n);   /* NULL: none in memory */
const char *pl_http_req_body_path(const struct pl_http_req *r);         /* FILE bodies */
size_t      pl_http_req_body_size(const struct pl_http_req *r);
const struct pl_json *pl_http_req_json(const struct pl_http_req *r);    /* JSON bodies */
/* The client has gone (closed its connection while waiting or streaming). */
int pl_http_req_gone(struct pl_http_req *r);

/* Answer whole. headers: name, value, ..., NULL (Content-Type among them; default
 * application/json). Answering twice, or after the client went, is PL_ERR_STATE / ignored. */
enum pl_status pl_http_respond(struct pl_http_req *r, int status, const char *const *headers,
                               const char *body, size_t n);
/* The layer's JSON error body with this status. */
enum pl_status pl_http_respond_error(struct pl_http_req *r, int status, const char *message,
                                     const char *type, const char *code);
/* Answer as a stream (chunked transfer): the status and headers go out now, then each write's
 * bytes as they come. A write after the client went returns PL_ERR_IO (nothing is sent). */
enum pl_status pl_http_stream_start(struct pl_http_req *r, int status, const char *const *headers);
enum pl_status pl_http_stream_write(struct pl_http_req *r, const char *data, size_t n);
void           pl_http_stream_end(struct pl_http_req *r);
/* Drop a reference. A request released unanswered is answered 500. */
void pl_http_req_release(struct pl_http_req *r);

/* {"error":{"message":..,"type":..,"code":..}} (pl_alloc'd; pl_free it). code may be NULL. */
char *pl_http_error_json(const char *message, const char *type, const char *code);

#endif

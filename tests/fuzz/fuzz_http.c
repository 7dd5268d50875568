/* fuzz_http.c — the HTTP layer of `peftlua serve` and the web UI (src/net/http.c over
 * libmicrohttpd): the input is sent as raw bytes on a TCP connection to a server started once
 * on 127.0.0.1 (a token, JSON / raw / file-body routes, a fixed route, static files); requests
 * that reach the worker are read whole (method, path, headers, query, body, parsed JSON) and
 * answered; the connection is read until the server closes it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "fuzz_common.h"
#include "peftlua/http.h"

static struct pl_http_server *srv;
static int port;

static void start(void)
{
    fz_init();
    char spool[600], stat_dir[600];
    snprintf(spool, sizeof spool, "%s/spool", fz_dir);
    snprintf(stat_dir, sizeof stat_dir, "%s/static", fz_dir);
    mkdir(spool, 0700);
    mkdir(stat_dir, 0700);
    fz_write("static/index.html", (const uint8_t *)"<p>hi</p>", 9);
    struct pl_http_opts o = { .port = 0, .max_body = 65536, .max_queue = 8, .idle_timeout_s = 2,
                              .token = "secret", .token_cookie = "peft_token" };
    if (pl_http_new(&srv, &o) != PL_OK ||
        pl_http_route(srv, "POST", "/v1/chat/completions", PL_HTTP_AUTH, PL_HTTP_BODY_JSON, 0, NULL) != PL_OK ||
        pl_http_route(srv, "GET", "/v1/models", 0, PL_HTTP_BODY_NONE, 0, NULL) != PL_OK ||
        pl_http_route(srv, "POST", "/raw", 0, PL_HTTP_BODY_RAW, 4096, NULL) != PL_OK ||
        pl_http_route(srv, "PUT", "/upload", PL_HTTP_AUTH, PL_HTTP_BODY_FILE, 0, spool) != PL_OK ||
        pl_http_fixed(srv, "GET", "/health", 0, 200, "application/json", "{\"status\":\"ok\"}", 15) != PL_OK ||
        pl_http_static(srv, "/ui", stat_dir, 0) != PL_OK || pl_http_start(srv) != PL_OK) {
        fprintf(stderr, "http: %s\n", pl_last_error());
        exit(1);
    }
    port = pl_http_port(srv);
}

static void serve_queued(void)
{
    struct pl_http_req *r;
    while (pl_http_next(srv, 0, &r) == PL_OK && r) {
        size_t n = 0, sum = 0;
        const char *v;
        (void)pl_http_req_method(r);
        (void)pl_http_req_path(r);
        (void)pl_http_req_header(r, "content-type");
        (void)pl_http_req_query(r, "stream");
        for (int i = 0; pl_http_req_header_at(r, i, &v); i++) sum += strlen(v);
        for (int i = 0; pl_http_req_query_at(r, i, &v); i++) sum += strlen(v);
        const char *b = pl_http_req_body(r, &n);
        for (size_t k = 0; b && k < n; k++) sum += (unsigned char)b[k];   /* every byte readable */
        const char *fp = pl_http_req_body_path(r);
        if (fp) unlink(fp);
        (void)pl_http_req_json(r);
        (void)sum;
        pl_http_respond(r, 200, NULL, "{}", 2);
        pl_http_req_release(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv) start();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return 0; }
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    char buf[4096];
    for (int spins = 0; spins < 400; spins++) {   /* at most ~2 s */
        serve_queued();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 5) > 0) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) break;                    /* the server closed the connection */
        }
    }
    close(fd);
    serve_queued();
    return 0;
}

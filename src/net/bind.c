/* Listening sockets: address resolution and binding for the listeners of a
 * config generation (SO_REUSEPORT, one socket per worker) and for the
 * admin listener. Main at start-up, the control thread on reload; the
 * workers take the sockets (worker.c, sg__worker_sync_listeners). */
#include "net/net_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int resolve_listen(const sg_hostport_t *hp, struct sockaddr_storage *ss, socklen_t *len, char *err,
                          size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", hp->port);
    const char *host = hp->host && hp->host[0] && strcmp(hp->host, "*") != 0 ? hp->host : NULL;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0 || !res) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", hp->host ? hp->host : "*", gai_strerror(r));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static uint16_t get_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, get_port(ss));
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, get_port(ss));
    }
}

static int bind_one(const struct sockaddr_storage *ss, socklen_t len, int backlog, bool reuseport, char *err,
                    size_t errlen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* libuv 1.44 has no UV_TCP_REUSEPORT: the kernel spreads connections
     * over the workers' sockets in one SO_REUSEPORT group. */
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) < 0) {
        char a[80];
        format_addr(ss, a, sizeof(a));
        snprintf(err, errlen, "bind %s: %s", a, strerror(errno));
        close(fd);
        return -1;
    }
    /* listen() here, before any worker runs, so connections made as soon
     * as the address is printed wait in the backlog instead of failing. */
    if (listen(fd, backlog > 0 ? backlog : 511) < 0) {
        snprintf(err, errlen, "listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static bool same_hostport(const sg_hostport_t *a, const sg_hostport_t *b)
{
    return a->port == b->port && strcmp(a->host ? a->host : "", b->host ? b->host : "") == 0;
}

/* The listener of prev whose sockets listener lc keeps: same configured
 * address (a rename keeps the socket), and for port 0 ("any port") the
 * same name too. SIZE_MAX: none. Config validation makes fixed addresses
 * unique, so the match is one to one. */
static size_t kept_from(const sg_listener_conf_t *lc, const sg_rtgen_t *prev)
{
    for (size_t j = 0; prev && j < prev->cfg->n_listeners; j++) {
        const sg_listener_conf_t *pc = &prev->cfg->listeners[j];
        if (same_hostport(&lc->addr, &pc->addr) && (lc->addr.port != 0 || strcmp(lc->name, pc->name) == 0))
            return j;
    }
    return SIZE_MAX;
}

/* Binds g's listeners (main at start-up, prev NULL; the control thread on
 * reload, before g is published). A listener that keeps a listener of prev
 * (kept_from) keeps its sockets: the ones no worker took yet move into g,
 * the others stay open in their workers (matched by g->laddr). Any other
 * gets n_workers new SO_REUSEPORT sockets. On failure nothing moved and the
 * new sockets are closed with g; -1 with the reason in err. */
int sg__bind_gen(sg_rtgen_t *g, sg_rtgen_t *prev, uint32_t nw, char *err, size_t errlen)
{
    const sg_config_t *cfg = g->cfg;
    size_t *kept = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(size_t));
    if (!kept) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const sg_listener_conf_t *lc = &cfg->listeners[i];
        kept[i] = kept_from(lc, prev);
        if (kept[i] != SIZE_MAX)
            continue;
        struct sockaddr_storage ss;
        socklen_t len;
        char lerr[200];
        if (resolve_listen(&lc->addr, &ss, &len, lerr, sizeof(lerr)) < 0)
            goto fail;
        for (uint32_t wi = 0; wi < nw; wi++) {
            int fd = bind_one(&ss, len, lc->backlog, true, lerr, sizeof(lerr));
            if (fd < 0)
                goto fail;
            atomic_store(&g->lfds[i * nw + wi], fd);
            if (wi == 0) {
                /* Port 0: the first bind picks the port, the others join it. */
                struct sockaddr_storage got;
                socklen_t glen = sizeof(got);
                if (getsockname(fd, (struct sockaddr *)&got, &glen) == 0)
                    set_port(&ss, get_port(&got));
                format_addr(&ss, g->laddr[i], sizeof(g->laddr[i]));
            }
        }
        continue;
    fail:
        snprintf(err, errlen, "listener %s: %s", lc->name, lerr);
        free(kept);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (kept[i] == SIZE_MAX)
            continue;
        memcpy(g->laddr[i], prev->laddr[kept[i]], sizeof(g->laddr[i]));
        for (uint32_t wi = 0; wi < nw; wi++)
            atomic_store(&g->lfds[i * nw + wi], atomic_exchange(&prev->lfds[kept[i] * nw + wi], -1));
    }
    free(kept);
    return 0;
}

/* The admin listener's socket for cfg->admin (-1: disabled). One socket,
 * no SO_REUSEPORT: a second instance on the same admin address fails
 * loudly instead of sharing its scrapes. Returns 0 or -1 with err. */
int sg__bind_admin(const sg_config_t *cfg, int *fd_out, char *addr, size_t addr_cap, char *err, size_t errlen)
{
    *fd_out = -1;
    addr[0] = '\0';
    if (!cfg->admin.enabled)
        return 0;
    struct sockaddr_storage ss;
    socklen_t len;
    char lerr[200];
    int fd = -1;
    if (resolve_listen(&cfg->admin.addr, &ss, &len, lerr, sizeof(lerr)) < 0 ||
        (fd = bind_one(&ss, len, 128, false, lerr, sizeof(lerr))) < 0) {
        snprintf(err, errlen, "admin listener: %s", lerr);
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t glen = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &glen) == 0)
        set_port(&ss, get_port(&got));
    format_addr(&ss, addr, addr_cap);
    *fd_out = fd;
    return 0;
}

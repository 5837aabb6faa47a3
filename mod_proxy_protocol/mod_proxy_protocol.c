/*
 * mod_proxy_protocol: receive the HAProxy PROXY protocol (v1 and v2).
 *
 * The header is read in a pre_connection hook that runs before any other
 * module's, straight from the socket: before core's filters exist, before
 * mod_ssl logs or handshakes, before mod_http2 and mod_reqtimeout start.
 * That read is the one the core would make anyway: as many bytes as have
 * arrived, up to the core's own buffer size.  The parser (pp_parse.c)
 * takes the header off the front, and whatever followed it in the same
 * read (a TLS ClientHello, an HTTP/2 preface, a request) is handed to the
 * core's input filter through the insert_network_bucket hook, ahead of the
 * socket: the connection's first reader gets it without a system call, so
 * a connection with a PROXY header costs the same reads as one without.
 * The client address is then set on the connection itself, so TLS,
 * HTTP/2, access checks and every log line of the connection see it,
 * mod_ssl's first line (its pre_connection) included.
 *
 * Settings apply per local address, like mod_remoteip's: the header arrives
 * before any name-based virtual host can be chosen.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_cfgtree.h"

#include "apr_portable.h"
#include "apr_strings.h"

#include "pp_cidr.h"
#include "pp_parse.h"
#include "pp_private.h"

module AP_MODULE_DECLARE_DATA proxy_protocol_module;

typedef struct {
    int enabled;                        /* -1: unset */
    apr_array_header_t *trusted;        /* of pp_cidr_t; NULL: unset */
    apr_array_header_t *exceptions;     /* of pp_cidr_t; NULL: unset */
    apr_interval_time_t timeout;        /* -1: unset */
    apr_size_t max_header;              /* 0: unset */
} pp_conf_t;

/* The settings in force on one local address (built by check_config). */
typedef struct {
    apr_sockaddr_t *addr;               /* NULL: any address */
    apr_port_t port;                    /* 0: any port */
    pp_conf_t conf;                     /* defaults applied */
    server_rec *s;                      /* where the settings come from */
} pp_rule_t;

/* The texts of a header's addresses and ports, in one allocation. */
typedef struct {
    char src_ip[INET6_ADDRSTRLEN];
    char dst_ip[INET6_ADDRSTRLEN];
    char src_port[PP_PORT_TEXT_LEN];
    char dst_port[PP_PORT_TEXT_LEN];
} pp_text_t;

/* What the header said, kept for the connection's requests (their
 * PROXY_PROTOCOL_* variables). */
typedef struct {
    const char *version;                /* NULL: nothing to export */
    const char *peer_ip;                /* the proxy's address */
    const pp_text_t *text;              /* NULL: no addresses */
    apr_table_t *tlvs;                  /* NULL: no TLV exported */
    apr_bucket *rest;                   /* read after the header, for the
                                         * core's first read; NULL: none */
} pp_conn_t;

/* Rebuilt on every (re)start from the new configuration. */
static apr_array_header_t *pp_rules;
static pp_conf_t pp_main_conf;

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

static void *pp_create_server_config(apr_pool_t *p, server_rec *s)
{
    pp_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->enabled = -1;
    conf->timeout = -1;
    return conf;
}

static void *pp_merge_server_config(apr_pool_t *p, void *basev, void *addv)
{
    pp_conf_t *base = basev, *add = addv;
    pp_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->enabled = add->enabled != -1 ? add->enabled : base->enabled;
    conf->trusted = add->trusted ? add->trusted : base->trusted;
    conf->exceptions = add->exceptions ? add->exceptions : base->exceptions;
    conf->timeout = add->timeout != -1 ? add->timeout : base->timeout;
    conf->max_header = add->max_header ? add->max_header : base->max_header;
    return conf;
}

static pp_conf_t pp_effective(const pp_conf_t *conf)
{
    pp_conf_t e = *conf;

    e.enabled = conf->enabled == 1;
    e.timeout = conf->timeout != -1 ? conf->timeout : PP_DEFAULT_TIMEOUT;
    e.max_header = conf->max_header ? conf->max_header : PP_DEFAULT_MAX_HEADER;
    return e;
}

static const char *pp_set_enabled(cmd_parms *cmd, void *dummy, int flag)
{
    pp_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                           &proxy_protocol_module);

    conf->enabled = flag;
    return NULL;
}

/* ProxyProtocolTrustedProxies and ProxyProtocolExceptions: cmd->info says
 * which list; every argument is an address or a CIDR block. */
static const char *pp_add_cidr(cmd_parms *cmd, void *dummy, const char *arg)
{
    pp_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                           &proxy_protocol_module);
    apr_array_header_t **list = cmd->info ? &conf->exceptions
                                          : &conf->trusted;
    pp_cidr_t cidr;
    const char *why;

    if ((why = pp_cidr_parse(&cidr, arg)) != NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s' is invalid: %s "
                            "(expected an IP address or address/bits)",
                            cmd->cmd->name, arg, why);
    }
    if (!*list) {
        *list = apr_array_make(cmd->pool, 4, sizeof(pp_cidr_t));
    }
    *(pp_cidr_t *)apr_array_push(*list) = cidr;
    return NULL;
}

static const char *pp_set_timeout(cmd_parms *cmd, void *dummy,
                                  const char *arg)
{
    pp_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                           &proxy_protocol_module);
    apr_interval_time_t t;

    if (ap_timeout_parameter_parse(arg, &t, "s") != APR_SUCCESS
        || t <= 0 || t > PP_MAX_TIMEOUT) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a time between "
                            "1ms and 3600s (a number of seconds, or with a "
                            "unit: 500ms, 2s)", cmd->cmd->name, arg);
    }
    conf->timeout = t;
    return NULL;
}

static const char *pp_set_max_header(cmd_parms *cmd, void *dummy,
                                     const char *arg)
{
    pp_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                           &proxy_protocol_module);
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (*arg < '0' || *arg > '9' || *end || v < PP_MIN_MAX_HEADER
        || v > PP_V2_MAX_LEN) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of bytes "
                            "between %d and %d", cmd->cmd->name, arg,
                            PP_MIN_MAX_HEADER, PP_V2_MAX_LEN);
    }
    conf->max_header = (apr_size_t)v;
    return NULL;
}

static const command_rec pp_cmds[] = {
    AP_INIT_FLAG("ProxyProtocol", pp_set_enabled, NULL, RSRC_CONF,
                 "Require a PROXY protocol header on connections to this "
                 "address (On|Off)"),
    AP_INIT_ITERATE("ProxyProtocolTrustedProxies", pp_add_cidr, NULL,
                    RSRC_CONF, "Addresses or CIDR blocks of the load "
                    "balancers allowed to send a PROXY header"),
    AP_INIT_ITERATE("ProxyProtocolExceptions", pp_add_cidr, (void *)1,
                    RSRC_CONF, "Addresses or CIDR blocks of peers that "
                    "connect directly, without a header"),
    AP_INIT_TAKE1("ProxyProtocolTimeout", pp_set_timeout, NULL, RSRC_CONF,
                  "Time allowed for the whole header to arrive (default 5s)"),
    AP_INIT_TAKE1("ProxyProtocolMaxHeaderSize", pp_set_max_header, NULL,
                  RSRC_CONF, "Largest PROXY v2 header accepted, in bytes "
                  "(default 16384)"),
    { NULL }
};

/* ------------------------------------------------------------------ */
/* Rules per local address                                             */
/* ------------------------------------------------------------------ */

static int pp_same_cidrs(const apr_array_header_t *a,
                         const apr_array_header_t *b)
{
    if (a == b) {
        return 1;
    }
    if (!a || !b || a->nelts != b->nelts) {
        return 0;
    }
    return memcmp(a->elts, b->elts, (size_t)a->nelts * sizeof(pp_cidr_t))
           == 0;
}

static int pp_same_conf(const pp_conf_t *a, const pp_conf_t *b)
{
    return a->enabled == b->enabled && a->timeout == b->timeout
           && a->max_header == b->max_header
           && pp_same_cidrs(a->trusted, b->trusted)
           && pp_same_cidrs(a->exceptions, b->exceptions);
}

static int pp_addr_is_any(const apr_sockaddr_t *sa)
{
    /* "*" and "_default_" both mean every address. */
    return apr_sockaddr_is_wildcard(sa)
           || (sa->family == APR_INET
               && sa->sa.sin.sin_addr.s_addr == 0xFFFFFFFFu);
}

static const char *pp_rule_name(apr_pool_t *p, const pp_rule_t *rule)
{
    char ip[64] = "*";

    if (rule->addr) {
        apr_sockaddr_ip_getbuf(ip, sizeof(ip), rule->addr);
    }
    return rule->port ? apr_psprintf(p, "%s:%u", ip, rule->port)
                      : apr_psprintf(p, "%s:*", ip);
}

static const char *pp_server_name(apr_pool_t *p, const server_rec *s)
{
    return apr_psprintf(p, "<VirtualHost> at %s:%d",
                        s->defn_name ? s->defn_name : "?",
                        s->defn_line_number);
}

/* Adds the settings of one virtual host address; vhosts that share an
 * address must agree, since the header is read before either is chosen. */
static const char *pp_add_rule(apr_pool_t *p, server_rec *s,
                               const server_addr_rec *sar)
{
    pp_conf_t conf = pp_effective(ap_get_module_config(
                                      s->module_config,
                                      &proxy_protocol_module));
    apr_sockaddr_t *addr = pp_addr_is_any(sar->host_addr) ? NULL
                                                          : sar->host_addr;
    pp_rule_t *rule;
    int i;

    for (i = 0; i < pp_rules->nelts; i++) {
        rule = &APR_ARRAY_IDX(pp_rules, i, pp_rule_t);
        if (rule->port != sar->host_port || !rule->addr != !addr
            || (addr && !apr_sockaddr_equal(rule->addr, addr))) {
            continue;
        }
        if (pp_same_conf(&rule->conf, &conf)) {
            return NULL;
        }
        return apr_psprintf(p, "ProxyProtocol settings differ between %s "
                            "and %s, which share the address %s: a PROXY "
                            "header is read before a name-based virtual "
                            "host is chosen, so they must agree",
                            pp_server_name(p, rule->s), pp_server_name(p, s),
                            pp_rule_name(p, rule));
    }
    rule = apr_array_push(pp_rules);
    rule->addr = addr;
    rule->port = sar->host_port;
    rule->conf = conf;
    rule->s = s;
    return NULL;
}

/* The settings for a local address: an exact address beats "*", a port
 * beats any port, and the main server's apply where no vhost matches. */
static const pp_conf_t *pp_conf_for(const apr_sockaddr_t *local)
{
    const pp_conf_t *best = &pp_main_conf;
    int best_score = -1, i;

    for (i = 0; i < pp_rules->nelts; i++) {
        const pp_rule_t *rule = &APR_ARRAY_IDX(pp_rules, i, pp_rule_t);
        int score = (rule->addr ? 2 : 0) + (rule->port ? 1 : 0);

        if (score <= best_score
            || (rule->port && rule->port != local->port)
            || (rule->addr && !apr_sockaddr_equal(rule->addr, local))) {
            continue;
        }
        best = &rule->conf;
        best_score = score;
    }
    return best;
}

static int pp_is_on(const ap_directive_t *d)
{
    return d->args && strcasecmp(d->args, "on") == 0;
}

static server_rec *pp_server_defined_at(server_rec *main_s,
                                        const ap_directive_t *d)
{
    server_rec *s;

    for (s = main_s->next; s; s = s->next) {
        if (s->defn_line_number == (unsigned)d->line_num && s->defn_name
            && d->filename && strcmp(s->defn_name, d->filename) == 0) {
            return s;
        }
    }
    return NULL;
}

/* mod_remoteip's RemoteIPProxyProtocol would read a second header. */
static const char *pp_check_remoteip(apr_pool_t *p, server_rec *main_s,
                                     const ap_directive_t *d,
                                     server_rec *vhost)
{
    const char *err;

    for (; d; d = d->next) {
        if (strcasecmp(d->directive, "<VirtualHost") == 0) {
            server_rec *s = pp_server_defined_at(main_s, d);
            if ((err = pp_check_remoteip(p, main_s, d->first_child,
                                         s ? s : vhost))) {
                return err;
            }
            continue;
        }
        if (d->first_child) {
            if ((err = pp_check_remoteip(p, main_s, d->first_child,
                                         vhost))) {
                return err;
            }
        }
        if (strcasecmp(d->directive, "RemoteIPProxyProtocol") || !pp_is_on(d)) {
            continue;
        }
        if (vhost) {
            pp_conf_t c = pp_effective(ap_get_module_config(
                              vhost->module_config, &proxy_protocol_module));
            if (!c.enabled) {
                continue;
            }
        }
        else if (!pp_main_conf.enabled && pp_rules->nelts == 0) {
            continue;
        }
        else if (!pp_main_conf.enabled) {
            int i, any = 0;
            for (i = 0; i < pp_rules->nelts; i++) {
                any |= APR_ARRAY_IDX(pp_rules, i, pp_rule_t).conf.enabled;
            }
            if (!any) {
                continue;
            }
        }
        return apr_psprintf(p, "RemoteIPProxyProtocol On (%s:%d) and "
                            "ProxyProtocol On apply to the same address: "
                            "only one module may read the PROXY header; "
                            "remove RemoteIPProxyProtocol",
                            d->filename, d->line_num);
    }
    return NULL;
}

static int pp_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *main_s)
{
    server_rec *s;
    server_addr_rec *sar;
    const char *err = NULL;
    int i, startup = ap_state_query(AP_SQ_MAIN_STATE)
                     != AP_SQ_MS_CREATE_PRE_CONFIG;

    pp_main_conf = pp_effective(ap_get_module_config(
                                    main_s->module_config,
                                    &proxy_protocol_module));
    pp_rules = apr_array_make(pconf, 8, sizeof(pp_rule_t));
    for (s = main_s->next; s && !err; s = s->next) {
        for (sar = s->addrs; sar && !err; sar = sar->next) {
            err = pp_add_rule(ptemp, s, sar);
        }
    }
    if (!err) {
        err = pp_check_remoteip(ptemp, main_s, ap_conftree, NULL);
    }
    if (err) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, NULL,
                     PPLOGNO(00001) "%s", err);
        return !OK;
    }

    if (!startup) {
        return OK;
    }
    if (pp_main_conf.enabled && !pp_main_conf.trusted) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, main_s, PPLOGNO(00002)
                     "ProxyProtocol On without ProxyProtocolTrustedProxies "
                     "(main server): every peer must send a PROXY header, "
                     "and any peer can claim any client address");
    }
    for (i = 0; i < pp_rules->nelts; i++) {
        pp_rule_t *rule = &APR_ARRAY_IDX(pp_rules, i, pp_rule_t);
        if (rule->conf.enabled && !rule->conf.trusted
            && !pp_same_conf(&rule->conf, &pp_main_conf)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rule->s,
                         PPLOGNO(00003) "ProxyProtocol On for %s without "
                         "ProxyProtocolTrustedProxies: every peer must send "
                         "a PROXY header, and any peer can claim any client "
                         "address", pp_rule_name(ptemp, rule));
        }
    }
    return OK;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static int pp_reject(conn_rec *c, const char *why)
{
    ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, c, PPLOGNO(00004)
                  "PROXY protocol: closing connection from %s: %s",
                  c->client_ip, why);
    c->keepalive = AP_CONN_CLOSE;
    /* Neither OK nor DONE: the MPM aborts and closes the connection
     * without running any other hook on it. */
    return HTTP_FORBIDDEN;
}

/* Waits until the socket is readable or the deadline passes. */
static int pp_wait_readable(int fd, apr_time_t deadline)
{
    struct pollfd pfd;
    apr_time_t now;
    int rc;

    do {
        now = apr_time_now();
        if (now >= deadline) {
            return 0;
        }
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

/*
 * Reads the header from the socket into *pbuf (*pcap bytes, allocated
 * from c->bucket_alloc; a larger v2 header gets a larger one).  Returns
 * NULL, or why it failed; *pn is then the number of bytes read, the
 * header (hdr->length bytes) and whatever followed it.
 *
 * Each recv() asks for as much as the buffer holds, like the core's read:
 * in the usual case, where the header arrived with what follows it, that
 * is the connection's only read until the client sends again.  The socket
 * is read with MSG_DONTWAIT and waited on with poll(), so its mode and
 * timeout are never touched.
 */
static const char *pp_read_header(conn_rec *c, apr_socket_t *sock,
                                  const pp_conf_t *conf, pp_header_t *hdr,
                                  char **pbuf, apr_size_t *pcap,
                                  apr_size_t *pn)
{
    apr_time_t deadline = apr_time_now() + conf->timeout;
    apr_size_t n = 0, need = 0;
    apr_os_sock_t fd;
    ssize_t got;

    apr_os_sock_get(&fd, sock);
    for (;;) {
        got = recv(fd, *pbuf + n, *pcap - n, MSG_DONTWAIT);
        if (got > 0) {
            pp_result_t res;

            n += (apr_size_t)got;
            *pn = n;
            res = pp_header_parse(hdr, (unsigned char *)*pbuf, n,
                                  conf->max_header, &need);
            if (res == PP_ERROR) {
                return hdr->error;
            }
            if (res == PP_OK) {
                return NULL;
            }
            if (n + need > *pcap) {
                /* A v2 header larger than the core's buffer (its length
                 * is known, and within ProxyProtocolMaxHeaderSize). */
                char *bigger = apr_bucket_alloc(n + need, c->bucket_alloc);

                if (!bigger) {
                    return "out of memory";
                }
                memcpy(bigger, *pbuf, n);
                apr_bucket_free(*pbuf);
                *pbuf = bigger;
                *pcap = n + need;
            }
            continue;
        }
        if (got == 0) {
            return apr_psprintf(c->pool, "connection closed after %"
                                APR_SIZE_T_FMT " bytes of the header", n);
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return apr_psprintf(c->pool, "read error: %s", strerror(errno));
        }
        /* One deadline for the whole header, however it is split. */
        if (!pp_wait_readable(fd, deadline)) {
            return apr_psprintf(c->pool, "header incomplete after %"
                                APR_TIME_T_FMT "ms (ProxyProtocolTimeout)"
                                ", %" APR_SIZE_T_FMT " bytes received",
                                apr_time_as_msec(conf->timeout), n);
        }
    }
}

static apr_sockaddr_t *pp_make_sockaddr(apr_pool_t *p, pp_family_t family,
                                        const unsigned char *ip,
                                        apr_port_t port)
{
    apr_sockaddr_t *sa = apr_pcalloc(p, sizeof(*sa));
    int v4 = family == PP_FAM_INET;

    /* Filled in place: numeric bytes need no resolver call. */
    sa->pool = p;
    sa->port = port;
    sa->family = v4 ? APR_INET : APR_INET6;
    sa->salen = v4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    sa->ipaddr_len = v4 ? sizeof(struct in_addr) : sizeof(struct in6_addr);
    sa->addr_str_len = v4 ? INET_ADDRSTRLEN : INET6_ADDRSTRLEN;
    if (v4) {
        sa->sa.sin.sin_family = AF_INET;
        sa->sa.sin.sin_port = htons(port);
        sa->ipaddr_ptr = &sa->sa.sin.sin_addr;
    }
    else {
        sa->sa.sin6.sin6_family = AF_INET6;
        sa->sa.sin6.sin6_port = htons(port);
        sa->ipaddr_ptr = &sa->sa.sin6.sin6_addr;
    }
    memcpy(sa->ipaddr_ptr, ip, sa->ipaddr_len);
    return sa;
}

static void pp_export_env(void *baton, const char *name, pp_format_t fmt,
                          const unsigned char *value, size_t len)
{
    apr_table_t *env = baton;
    apr_pool_t *p = apr_table_elts(env)->pool;
    char *text = apr_palloc(p, pp_format_len(fmt, len));

    pp_format_value(text, fmt, value, len);
    if (!apr_table_get(env, name)) {
        apr_table_setn(env, apr_pstrdup(p, name), text);
    }
}

/* Records what the header says and sets the client address. */
static void pp_apply_header(conn_rec *c, pp_conn_t *cc,
                            const pp_header_t *hdr)
{
    cc->version = hdr->version == 1 ? "1" : "2";
    cc->peer_ip = c->client_ip;
    if (hdr->has_addresses) {
        apr_sockaddr_t *src = pp_make_sockaddr(c->pool, hdr->family,
                                               hdr->src_addr, hdr->src_port);
        pp_text_t *t = apr_palloc(c->pool, sizeof(*t));

        if (hdr->family == PP_FAM_INET) {
            /* Written here, the same text as inet_ntop's: APR's writer
             * wants a sockaddr, which the destination needs for nothing
             * else. */
            pp_addr4_text(t->src_ip, hdr->src_addr);
            pp_addr4_text(t->dst_ip, hdr->dst_addr);
        }
        else {
            /* APR's text, as c->client_ip always had: an IPv4-mapped
             * address is written as IPv4. */
            apr_sockaddr_ip_getbuf(t->src_ip, sizeof(t->src_ip), src);
            apr_sockaddr_ip_getbuf(t->dst_ip, sizeof(t->dst_ip),
                                   pp_make_sockaddr(c->pool, hdr->family,
                                                    hdr->dst_addr,
                                                    hdr->dst_port));
        }
        pp_port_text(t->src_port, hdr->src_port);
        pp_port_text(t->dst_port, hdr->dst_port);
        cc->text = t;

        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, c, PPLOGNO(00005)
                      "PROXY v%d from %s: client %s%s%s:%u", hdr->version,
                      c->client_ip, src->family == APR_INET6 ? "[" : "",
                      t->src_ip, src->family == APR_INET6 ? "]" : "",
                      hdr->src_port);
        c->client_addr = src;
        c->client_ip = t->src_ip;
    }
    else {
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, c, PPLOGNO(00006)
                      "PROXY v%d from %s: no usable address (LOCAL, "
                      "UNKNOWN, UNIX or DGRAM), keeping the peer's",
                      hdr->version, c->client_ip);
    }
    if (hdr->tlvs_len) {
        cc->tlvs = apr_table_make(c->pool, 4);
        pp_header_export_tlvs(hdr, pp_export_env, cc->tlvs);
    }
}

/*
 * What followed the header in the read of pre_connection goes into the
 * core input filter's brigade ahead of the socket, when the core sets it
 * up at the connection's first read (whoever makes it: mod_ssl, the
 * HTTP/1 or HTTP/2 reader).  The core then serves every read mode from it
 * as from any data it read itself, and reads the socket once it is used
 * up.  mod_logio counts these bytes (it sits above the core), not the
 * header's.
 */
static apr_status_t pp_insert_network_bucket(conn_rec *c,
                                             apr_bucket_brigade *bb,
                                             apr_socket_t *socket)
{
    pp_conn_t *cc;
    apr_bucket *e;

    if (c->master || !(cc = ap_get_module_config(c->conn_config,
                                                 &proxy_protocol_module))
        || !cc->rest) {
        return AP_DECLINED;
    }
    APR_BRIGADE_INSERT_TAIL(bb, cc->rest);
    cc->rest = NULL;
    e = apr_bucket_socket_create(socket, c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, e);
    return APR_SUCCESS;
}

/* A connection closed before its first read (another pre_connection hook
 * refused it): the bucket owns memory of c->bucket_alloc, which outlives
 * c->pool. */
static apr_status_t pp_rest_cleanup(void *data)
{
    pp_conn_t *cc = data;

    if (cc->rest) {
        apr_bucket_destroy(cc->rest);
        cc->rest = NULL;
    }
    return APR_SUCCESS;
}

static int pp_pre_connection(conn_rec *c, void *csd)
{
    const pp_conf_t *conf;
    pp_conn_t *cc;
    pp_header_t hdr;
    char *buf;
    apr_size_t cap = APR_BUCKET_BUFF_SIZE, n = 0;
    const unsigned char *peer;
    const char *why;
    int family;

    /* HTTP/2 secondary connections are copies of their primary, client
     * address included; mod_proxy's backend connections are ours to make,
     * not to receive. */
    if (c->master || c->outgoing) {
        return DECLINED;
    }
    conf = pp_conf_for(c->local_addr);
    if (!conf->enabled) {
        return DECLINED;
    }
    cc = apr_pcalloc(c->pool, sizeof(*cc));
    ap_set_module_config(c->conn_config, &proxy_protocol_module, cc);

    family = c->client_addr->family == APR_INET ? 4 : 6;
    peer = c->client_addr->ipaddr_ptr;
    if (conf->exceptions
        && pp_cidr_match_any((pp_cidr_t *)conf->exceptions->elts,
                             (size_t)conf->exceptions->nelts, family, peer)) {
        ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, c, PPLOGNO(00007)
                      "PROXY protocol: %s is an exception, served as itself",
                      c->client_ip);
        return DECLINED;
    }
    if (conf->trusted
        && !pp_cidr_match_any((pp_cidr_t *)conf->trusted->elts,
                              (size_t)conf->trusted->nelts, family, peer)) {
        return pp_reject(c, "peer is not in ProxyProtocolTrustedProxies");
    }
    /* The buffer the core's first read would have used; the bucket that
     * hands its rest on owns it. */
    buf = apr_bucket_alloc(cap, c->bucket_alloc);
    /* Read below when no byte came (the parser zeroes it on its first
     * call, which a close or a timeout before any byte never makes). */
    memset(&hdr, 0, sizeof(hdr));
    if ((why = pp_read_header(c, csd, conf, &hdr, &buf, &cap, &n))
        != NULL) {
        apr_bucket_free(buf);
        if (hdr.version == 2 && hdr.length > conf->max_header) {
            why = apr_psprintf(c->pool, "%s (%" APR_SIZE_T_FMT " > %"
                               APR_SIZE_T_FMT ")", why, hdr.length,
                               conf->max_header);
        }
        return pp_reject(c, why);
    }
    pp_apply_header(c, cc, &hdr);
    if (n > hdr.length) {
        cc->rest = apr_bucket_heap_create(buf, n, apr_bucket_free,
                                          c->bucket_alloc);
        cc->rest->start = (apr_off_t)hdr.length;
        cc->rest->length = n - hdr.length;
        apr_pool_cleanup_register(c->pool, cc, pp_rest_cleanup,
                                  apr_pool_cleanup_null);
    }
    else {
        apr_bucket_free(buf);
    }
    return DECLINED;
}

static int pp_set_request_env(void *rec, const char *key, const char *value)
{
    apr_table_setn(rec, key, value);
    return 1;
}

static int pp_post_read_request(request_rec *r)
{
    conn_rec *c = r->connection;
    const pp_conn_t *cc;
    apr_table_t *env;
    void (*put)(apr_table_t *, const char *, const char *);

    while (c->master) {
        c = c->master;
    }
    cc = ap_get_module_config(c->conn_config, &proxy_protocol_module);
    if (!cc || !cc->version) {
        return DECLINED;
    }
    env = r->subprocess_env;
    /* As early as this (REALLY_FIRST) the request's table is empty but
     * for another module's doing: then the names, which are distinct,
     * are added without a lookup each. */
    put = apr_is_empty_table(env) ? apr_table_addn : apr_table_setn;
    put(env, "PROXY_PROTOCOL_VERSION", cc->version);
    put(env, "PROXY_PROTOCOL_PEER_ADDR", cc->peer_ip);
    if (cc->text) {
        put(env, "PROXY_PROTOCOL_SRC_ADDR", cc->text->src_ip);
        put(env, "PROXY_PROTOCOL_SRC_PORT", cc->text->src_port);
        put(env, "PROXY_PROTOCOL_DST_ADDR", cc->text->dst_ip);
        put(env, "PROXY_PROTOCOL_DST_PORT", cc->text->dst_port);
    }
    if (cc->tlvs) {
        apr_table_do(pp_set_request_env, env, cc->tlvs, NULL);
    }
    return DECLINED;
}

static void pp_register_hooks(apr_pool_t *p)
{
    ap_hook_check_config(pp_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(pp_pre_connection, NULL, NULL,
                           APR_HOOK_REALLY_FIRST);
    ap_hook_post_read_request(pp_post_read_request, NULL, NULL,
                              APR_HOOK_REALLY_FIRST);
    ap_hook_insert_network_bucket(pp_insert_network_bucket, NULL, NULL,
                                  APR_HOOK_REALLY_FIRST);
}

AP_DECLARE_MODULE(proxy_protocol) = {
    STANDARD20_MODULE_STUFF,
    NULL,                       /* per-directory config */
    NULL,                       /* merge per-directory */
    pp_create_server_config,
    pp_merge_server_config,
    pp_cmds,
    pp_register_hooks
};

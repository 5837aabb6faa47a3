/*
 * csy_probe.c: which certificate does our listener present?  See
 * csy_probe.h.
 */
#include <string.h>

#include <sys/socket.h>
#include <sys/time.h>

#include <apr_network_io.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cs_x509.h"
#include "csy_probe.h"

apr_status_t csy_probe_serial(const char **serial, apr_pool_t *p,
                              const char *host, int port, const char *name,
                              apr_interval_time_t timeout, const char **err)
{
    apr_sockaddr_t *sa;
    apr_socket_t *sock;
    apr_os_sock_t fd;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    X509 *cert = NULL;
    cs_cert_info_t info;
    apr_status_t rv;

    *serial = NULL;
    if ((rv = apr_sockaddr_info_get(&sa, host, APR_UNSPEC, (apr_port_t)port,
                                    0, p))
        || (rv = apr_socket_create(&sock, sa->family, SOCK_STREAM,
                                   APR_PROTO_TCP, p))) {
        *err = apr_psprintf(p, "probe %s:%d: %pm", host, port, &rv);
        return rv;
    }
    apr_socket_timeout_set(sock, timeout);
    if ((rv = apr_socket_connect(sock, sa))) {
        *err = apr_psprintf(p, "probe %s:%d: connect: %pm", host, port, &rv);
        apr_socket_close(sock);
        return rv;
    }
    apr_os_sock_get(&fd, sock);

    rv = APR_EGENERAL;
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !(ssl = SSL_new(ctx)) || !SSL_set_fd(ssl, fd)
        || !SSL_set_tlsext_host_name(ssl, name)) {
        *err = "probe: cannot set up TLS";
        goto done;
    }
    /* Blocking with the socket's timeout: APR put it in non-blocking mode
     * with poll(); OpenSSL needs a plain blocking socket. */
    apr_socket_opt_set(sock, APR_SO_NONBLOCK, 0);
    apr_socket_timeout_set(sock, -1);
    {
        struct timeval tv;
        tv.tv_sec = (time_t)apr_time_sec(timeout);
        tv.tv_usec = (suseconds_t)apr_time_usec(timeout);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (SSL_connect(ssl) != 1) {
        *err = apr_psprintf(p, "probe %s:%d (%s): TLS handshake failed",
                            host, port, name);
        goto done;
    }
    if (!(cert = SSL_get1_peer_certificate(ssl))) {
        *err = "probe: no certificate presented";
        goto done;
    }
    cs_cert_info(&info, p, cert);
    *serial = info.serial;
    rv = APR_SUCCESS;
done:
    ERR_clear_error();
    X509_free(cert);
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    apr_socket_close(sock);
    return rv;
}

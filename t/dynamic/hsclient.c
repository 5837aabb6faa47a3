/*
 * hsclient: TLS handshakes with SNI against one address, for the dynamic
 * mode's end-to-end test and bench/scale.sh.
 *
 *   hsclient -p PORT -f NAMES [-c THREADS] [-n COUNT | -u STOPFILE]
 *            [-r] [-A CAFILE] [-o OUT] [-H ADDR]
 *
 * Each handshake is a new TCP connection to ADDR:PORT (127.0.0.1), a TLS
 * handshake with the next name of NAMES (one per line; -r: a random one)
 * as SNI, then close; no HTTP.  With -A the chain must verify against
 * CAFILE and the certificate must match the name, else the handshake
 * counts as failed.  Runs COUNT handshakes in all (default: each name
 * once), or until STOPFILE exists.  -o writes "name serial" for each
 * name's last handshake (serial in lower-case hex, "-" if it failed).
 *
 * Prints one line:
 *   handshakes N failed F seconds S rate R/s p50 A ms p99 B ms max C ms
 * and exits 0 (failures are for the caller to judge).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static char **names;
static size_t nnames;
static char **serials;          /* last serial per name */
static double *lat;             /* ms, per handshake */
static long target, done, failed;
static int random_pick;
static const char *stopfile;
static const char *addr = "127.0.0.1";
static int port;
static SSL_CTX *ctx;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static size_t lat_cap;

static double now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static char *serial_hex(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL, *out, *p;

    BN_free(bn);
    if (!hex) {
        return strdup("-");
    }
    for (p = hex; *p; p++) {
        *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    }
    /* As the tests write serials: lower case, no leading zeros. */
    for (p = hex; p[0] == '0' && p[1]; p++) {
    }
    out = strdup(p);
    OPENSSL_free(hex);
    return out;
}

/* One handshake; the serial presented (malloc) or NULL on failure. */
static char *handshake(const char *name)
{
    struct sockaddr_in sa;
    SSL *ssl = NULL;
    X509 *peer;
    char *serial = NULL;
    int fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return NULL;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, addr, &sa.sin_addr);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        goto out;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, name);
    if (SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE) {
        SSL_set1_host(ssl, name);
    }
    if (SSL_connect(ssl) != 1) {
        goto out;
    }
    peer = SSL_get1_peer_certificate(ssl);
    if (peer) {
        serial = serial_hex(peer);
        X509_free(peer);
    }
    SSL_shutdown(ssl);
out:
    if (ssl) {
        SSL_free(ssl);
    }
    ERR_clear_error();
    close(fd);
    return serial;
}

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg * 7919u + (unsigned)time(NULL);
    long i;
    size_t k;
    double t0, ms;
    char *serial;

    for (;;) {
        pthread_mutex_lock(&mu);
        if (stopfile ? access(stopfile, F_OK) == 0 : done >= target) {
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        i = done++;
        pthread_mutex_unlock(&mu);
        k = random_pick ? (size_t)rand_r(&seed) % nnames
                        : (size_t)i % nnames;
        t0 = now_ms();
        serial = handshake(names[k]);
        ms = now_ms() - t0;
        pthread_mutex_lock(&mu);
        if ((size_t)i >= lat_cap) {
            lat_cap = lat_cap ? lat_cap * 2 : 65536;
            while ((size_t)i >= lat_cap) {
                lat_cap *= 2;
            }
            lat = realloc(lat, lat_cap * sizeof(*lat));
        }
        lat[i] = ms;
        if (!serial) {
            failed++;
        }
        free(serials[k]);
        serials[k] = serial ? serial : strdup("-");
        pthread_mutex_unlock(&mu);
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *file = NULL, *cafile = NULL, *out = NULL;
    int threads = 1, opt, i;
    pthread_t *t;
    char line[512];
    size_t cap = 0;
    double t0, secs;
    FILE *f;

    while ((opt = getopt(argc, argv, "p:f:c:n:u:rA:o:H:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'f': file = optarg; break;
        case 'c': threads = atoi(optarg); break;
        case 'n': target = atol(optarg); break;
        case 'u': stopfile = optarg; break;
        case 'r': random_pick = 1; break;
        case 'A': cafile = optarg; break;
        case 'o': out = optarg; break;
        case 'H': addr = optarg; break;
        default:
            fprintf(stderr, "usage: hsclient -p PORT -f NAMES [-c THREADS] "
                    "[-n COUNT | -u STOPFILE] [-r] [-A CAFILE] [-o OUT] "
                    "[-H ADDR]\n");
            return 2;
        }
    }
    if (!port || !file || threads < 1 || !(f = fopen(file, "r"))) {
        fprintf(stderr, "hsclient: need -p PORT and a readable -f NAMES\n");
        return 2;
    }
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, " \t\r\n")] = '\0';
        if (!line[0]) {
            continue;
        }
        if (nnames == cap) {
            cap = cap ? cap * 2 : 1024;
            names = realloc(names, cap * sizeof(*names));
        }
        names[nnames++] = strdup(line);
    }
    fclose(f);
    if (!nnames) {
        fprintf(stderr, "hsclient: no names in %s\n", file);
        return 2;
    }
    serials = calloc(nnames, sizeof(*serials));
    if (!target) {
        target = (long)nnames;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    /* No session resumption: every handshake is a full one. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (cafile) {
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
            fprintf(stderr, "hsclient: cannot read %s\n", cafile);
            return 2;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    t = calloc((size_t)threads, sizeof(*t));
    t0 = now_ms();
    for (i = 0; i < threads; i++) {
        pthread_create(&t[i], NULL, worker, (void *)(size_t)i);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
    }
    secs = (now_ms() - t0) / 1e3;
    if (done > 0) {
        qsort(lat, (size_t)done, sizeof(*lat), cmp);
    }
    printf("handshakes %ld failed %ld seconds %.2f rate %.1f/s p50 %.2f ms "
           "p99 %.2f ms max %.2f ms\n", done, failed, secs,
           secs > 0 ? done / secs : 0.0,
           done ? lat[(size_t)(done * 0.50)] : 0.0,
           done ? lat[(size_t)(done * 0.99)] : 0.0,
           done ? lat[done - 1] : 0.0);
    if (out && (f = fopen(out, "w"))) {
        for (cap = 0; cap < nnames; cap++) {
            if (serials[cap]) {
                fprintf(f, "%s %s\n", names[cap], serials[cap]);
            }
        }
        fclose(f);
    }
    return 0;
}

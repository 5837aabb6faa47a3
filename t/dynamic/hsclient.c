/*
 * hsclient: TLS handshakes with SNI against one address, for the dynamic
 * mode's end-to-end test and bench/scale.sh.
 *
 *   hsclient -p PORT[,PORT...] -f NAMES [-c THREADS]
 *            [-n COUNT | -u STOPFILE | -R RATE -t SECONDS]
 *            [-r] [-1] [-A CAFILE] [-o OUT] [-H ADDR]
 *
 * Each handshake is a new TCP connection to ADDR:PORT (127.0.0.1), a TLS
 * handshake with the next name of NAMES (one per line; -r: a random one)
 * as SNI, then close; no HTTP.  With -A the chain must verify against
 * CAFILE and the certificate must match the name, else the handshake
 * counts as failed.  Runs COUNT handshakes in all (default: each name
 * once), or until STOPFILE exists.  -o writes "name serial" for each
 * name's last handshake (serial in lower-case hex, "-" if it failed).
 *
 * Several ports: handshake i goes to the (i mod n)-th.
 *
 * -R RATE -t SECONDS: paced (an open loop): handshake i starts at
 * i / RATE seconds, RATE x SECONDS in all, whatever the earlier ones
 * took; THREADS must cover RATE x latency (a thread waits for its
 * handshake).  A start more than 10 ms after its time counts as late:
 * the client or the machine could not keep the rate.
 *
 * -1: the server's first flight only.  The ClientHello is OpenSSL's (a
 * new X25519 key share each time), then the client reads records until
 * it has the ServerHello and HS_FLIGHT_RECORDS (4) encrypted records
 * (TLS 1.3: EncryptedExtensions, Certificate, CertificateVerify and
 * Finished, one record each as OpenSSL and mod_ssl send them, so the
 * server has signed and sent its whole flight), and closes.  The server's
 * work for the handshake is all done; the client's own key agreement,
 * signature check and Finished are saved.  A TLS 1.2 answer, an alert or
 * a close before that counts as failed; no serial is read (-A, -o: "-").
 *
 * Prints one line:
 *   handshakes N failed F seconds S rate R/s p50 A ms p99 B ms max C ms
 *   cpu U s [offered O/s late L maxlate M ms]
 * (cpu: the client's own user + system time; the last three when paced)
 * and exits 0 (failures are for the caller to judge).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
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
static int ports[16];
static int nports;
static double pace_rate;        /* -R: handshakes per second, 0: closed loop */
static double pace_t0;          /* ms: when handshake 0 starts */
static long late;               /* paced starts more than 10 ms late */
static double max_late;         /* ms */
static int first_flight;        /* -1 */

#define HS_FLIGHT_RECORDS 4
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

static int read_full(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    ssize_t r;

    while (got < n) {
        r = read(fd, buf + got, n - got);
        if (r <= 0) {
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* -1: send OpenSSL's ClientHello for name on fd, read the server's first
 * flight record by record; 0 once it is all there, -1 otherwise. */
static int first_flight_only(int fd, const char *name)
{
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    unsigned char hdr[5], body[16384 + 2048];
    char *hello;
    long len;
    int ok = -1, hello_seen = 0, enc = 0;
    size_t rlen;

    if (!ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        SSL_free(ssl);
        return -1;
    }
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    SSL_set_tlsext_host_name(ssl, name);
    SSL_do_handshake(ssl);              /* writes the ClientHello */
    len = BIO_get_mem_data(wb, &hello);
    if (len <= 0 || write(fd, hello, (size_t)len) != len) {
        goto out;
    }
    while (enc < HS_FLIGHT_RECORDS) {
        if (read_full(fd, hdr, sizeof(hdr)) != 0) {
            goto out;
        }
        rlen = ((size_t)hdr[3] << 8) | hdr[4];
        if (rlen > sizeof(body) || read_full(fd, body, rlen) != 0) {
            goto out;
        }
        if (hdr[0] == 22 && !hello_seen) {
            /* ServerHello (type 2) with TLS 1.3's supported_versions; a
             * TLS 1.2 ServerHello also starts with 2: the version in the
             * record layer does not tell, the encrypted records do. */
            if (rlen < 1 || body[0] != 2) {
                goto out;
            }
            hello_seen = 1;
        }
        else if (hdr[0] == 23 && hello_seen) {
            enc++;
        }
        else if (hdr[0] != 20) {        /* ChangeCipherSpec: compatibility */
            goto out;                   /* an alert, TLS 1.2's flight */
        }
    }
    ok = 0;
out:
    SSL_free(ssl);                      /* frees rb and wb */
    return ok;
}

/* One handshake; the serial presented (malloc) or NULL on failure. */
static char *handshake(const char *name, int port)
{
    struct sockaddr_in sa;
    SSL *ssl = NULL;
    X509 *peer;
    char *serial = NULL;
    struct timeval tv;
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
    if (first_flight) {
        /* A server that waits for more (a HelloRetryRequest) fails. */
        tv.tv_sec = 10;
        tv.tv_usec = 0;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (first_flight_only(fd, name) == 0) {
            serial = strdup("-");
        }
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

/* Sleep until now_ms() reaches at. */
static void wait_until(double at)
{
    struct timespec t;
    double left;

    while ((left = at - now_ms()) > 0) {
        t.tv_sec = (time_t)(left / 1e3);
        t.tv_nsec = (long)((left - t.tv_sec * 1e3) * 1e6);
        nanosleep(&t, NULL);
    }
}

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg * 7919u + (unsigned)time(NULL);
    long i;
    size_t k;
    double t0, ms, at, lateness = 0;
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
        if (pace_rate > 0) {
            at = pace_t0 + (double)i * 1e3 / pace_rate;
            wait_until(at);
            lateness = now_ms() - at;
        }
        t0 = now_ms();
        serial = handshake(names[k], ports[(size_t)i % (size_t)nports]);
        ms = now_ms() - t0;
        pthread_mutex_lock(&mu);
        if (pace_rate > 0) {
            if (lateness > 10.0) {
                late++;
            }
            if (lateness > max_late) {
                max_late = lateness;
            }
        }
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
    double seconds = 0;
    struct rusage ru;
    char *pp, *tok, *save;
    pthread_t *t;
    char line[512];
    size_t cap = 0;
    double t0, secs;
    FILE *f;

    while ((opt = getopt(argc, argv, "p:f:c:n:u:rA:o:H:R:t:1")) != -1) {
        switch (opt) {
        case 'p':
            pp = strdup(optarg);
            for (tok = strtok_r(pp, ",", &save); tok && nports < 16;
                 tok = strtok_r(NULL, ",", &save)) {
                ports[nports++] = atoi(tok);
            }
            free(pp);
            break;
        case 'R': pace_rate = atof(optarg); break;
        case 't': seconds = atof(optarg); break;
        case '1': first_flight = 1; break;
        case 'f': file = optarg; break;
        case 'c': threads = atoi(optarg); break;
        case 'n': target = atol(optarg); break;
        case 'u': stopfile = optarg; break;
        case 'r': random_pick = 1; break;
        case 'A': cafile = optarg; break;
        case 'o': out = optarg; break;
        case 'H': addr = optarg; break;
        default:
            fprintf(stderr, "usage: hsclient -p PORT[,PORT...] -f NAMES "
                    "[-c THREADS] [-n COUNT | -u STOPFILE | -R RATE "
                    "-t SECONDS] [-r] [-1] [-A CAFILE] [-o OUT] "
                    "[-H ADDR]\n");
            return 2;
        }
    }
    if (!nports || !ports[0] || !file || threads < 1
        || !(f = fopen(file, "r"))) {
        fprintf(stderr, "hsclient: need -p PORT and a readable -f NAMES\n");
        return 2;
    }
    if ((pace_rate > 0) != (seconds > 0) || pace_rate < 0 || seconds < 0
        || (pace_rate > 0 && stopfile)) {
        fprintf(stderr, "hsclient: -R RATE goes with -t SECONDS "
                "(and not -u)\n");
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
    if (pace_rate > 0) {
        target = (long)(pace_rate * seconds + 0.5);
    }
    if (!target) {
        target = (long)nnames;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    /* No session resumption: every handshake is a full one. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (first_flight) {
        /* The flight counted is TLS 1.3's. */
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    }
    if (cafile) {
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
            fprintf(stderr, "hsclient: cannot read %s\n", cafile);
            return 2;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    t = calloc((size_t)threads, sizeof(*t));
    t0 = now_ms();
    pace_t0 = t0 + 10;      /* the threads are up before the first start */
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
    getrusage(RUSAGE_SELF, &ru);
    printf("handshakes %ld failed %ld seconds %.2f rate %.1f/s p50 %.2f ms "
           "p99 %.2f ms max %.2f ms cpu %.2f s", done, failed, secs,
           secs > 0 ? done / secs : 0.0,
           done ? lat[(size_t)(done * 0.50)] : 0.0,
           done ? lat[(size_t)(done * 0.99)] : 0.0,
           done ? lat[done - 1] : 0.0,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    if (pace_rate > 0) {
        printf(" offered %.1f/s late %ld maxlate %.2f ms", pace_rate, late,
               max_late);
    }
    printf("\n");
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

/*
 * cs_tkey.h: the pool's TLS session ticket keys (issue 16, part 1).
 *
 * CertService makes one ticket key per rotation period and seals it, like
 * a private key, to the pool's wrapping certificates; every proxy fetches
 * the set with its sync, opens it, and keeps it in shared memory, where
 * the ticket callback of every TLS context reads it.  So a ticket any
 * proxy issued resumes on every proxy, and rotation needs no restart.
 *
 * A key's life, with rotate R and accept A (CertServiceTicketKeys), the
 * key of the period starting at S (S a multiple of R since the epoch):
 *
 *   [S - R, S)          published, accepted only: every proxy has it
 *                       before any proxy issues tickets with it
 *   [S, S + R)          issuing (and accepted)
 *   [S + R, S + R + A)  accepted only: every ticket it issued is honoured
 *                       for at least A (mod_ssl's session timeout, 300 s
 *                       by default, may end a ticket earlier)
 *   from S + R + A      gone: a ticket under it gets a full handshake
 *
 * The format is what SSL_CTX_set_tlsext_ticket_key_evp_cb needs: a
 * 16-byte name, a 32-byte HMAC-SHA256 key, a 32-byte AES-256-CBC key.
 *
 * Pure code: APR and OpenSSL 3.0 only.
 */
#ifndef CS_TKEY_H
#define CS_TKEY_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <openssl/evp.h>

#define CS_TK_NAME_LEN      16
#define CS_TK_HMAC_LEN      32
#define CS_TK_AES_LEN       32
/* What is sealed: name, HMAC key, AES key (the name inside the envelope
 * binds the secret to the name published beside it). */
#define CS_TK_SECRET_LEN    (CS_TK_NAME_LEN + CS_TK_HMAC_LEN + CS_TK_AES_LEN)
/* Keys a proxy holds at once: (A / R) + 3 with the largest ratio the
 * directive allows (CS_TK_MAX_RATIO). */
#define CS_TK_MAX           16
#define CS_TK_MAX_RATIO     12

typedef struct {
    unsigned char name[CS_TK_NAME_LEN];
    unsigned char hmac[CS_TK_HMAC_LEN];
    unsigned char aes[CS_TK_AES_LEN];
    apr_int64_t issue_from;     /* unix seconds: S */
    apr_int64_t issue_until;    /* S + R */
    apr_int64_t accept_until;   /* S + R + A */
} cs_tk_key_t;

/* Phases of a key at a time (cs_tk_phase). */
typedef enum {
    CS_TK_UNPUBLISHED = 0,      /* before S - R */
    CS_TK_EARLY,                /* published, accepted only */
    CS_TK_ISSUING,
    CS_TK_LATE,                 /* accepted only */
    CS_TK_GONE
} cs_tk_phase_e;

/** The start of the period that issues at now (a multiple of rotate). */
apr_int64_t cs_tk_period(apr_int64_t now, apr_int64_t rotate);

/** Fill k's times for the period starting at start. */
void cs_tk_window(cs_tk_key_t *k, apr_int64_t start, apr_int64_t rotate,
                  apr_int64_t accept);

/** k's phase at now (rotate: the schedule's, for the published phase). */
cs_tk_phase_e cs_tk_phase(const cs_tk_key_t *k, apr_int64_t now,
                          apr_int64_t rotate);

/** A fresh key (random name and secrets) for the period at start. */
apr_status_t cs_tk_generate(cs_tk_key_t *k, apr_int64_t start,
                            apr_int64_t rotate, apr_int64_t accept);

/** The 80 bytes that are sealed, and back (APR_EINVAL: wrong length). */
void cs_tk_secret_pack(unsigned char out[CS_TK_SECRET_LEN],
                       const cs_tk_key_t *k);
apr_status_t cs_tk_secret_unpack(cs_tk_key_t *k, const unsigned char *in,
                                 apr_size_t len);

/** Lower-case hex of a name (33 bytes with the NUL), and back. */
void cs_tk_name_hex(char out[2 * CS_TK_NAME_LEN + 1],
                    const unsigned char name[CS_TK_NAME_LEN]);
apr_status_t cs_tk_name_parse(unsigned char name[CS_TK_NAME_LEN],
                              const char *hex);

/*
 * The table in shared memory: one writer (the sync daemon), any number of
 * readers (every worker thread's handshakes).  A sequence lock: the
 * writer makes seq odd, writes, makes it even; a reader copies and tries
 * again if seq was odd or moved.  Readers never block the writer, and the
 * writer never waits for a reader.  Two writers (an old daemon finishing
 * while a new one starts) take turns (compare-and-swap from even); an odd
 * seq left by a writer that died is taken over by the next writer, and a
 * reader that finds it odd for too long gets an empty table (no tickets,
 * full handshakes) instead of spinning in a handshake.
 */
typedef struct cs_tk_table_t {
    volatile apr_uint32_t seq;
    apr_uint32_t n;
    apr_int64_t updated;        /* unix seconds of the last put */
    apr_int64_t rotate;         /* the schedule CertService published */
    apr_int64_t accept;
    cs_tk_key_t keys[CS_TK_MAX];
} cs_tk_table_t;

/** Empty the table (before anyone reads it). */
void cs_tk_table_init(cs_tk_table_t *t);

/** Replace the keys (at most CS_TK_MAX, in any order). */
void cs_tk_table_put(cs_tk_table_t *t, const cs_tk_key_t *keys, int n,
                     apr_int64_t rotate, apr_int64_t accept,
                     apr_int64_t now);

/** A consistent copy of the table (out must hold CS_TK_MAX keys). */
void cs_tk_table_get(cs_tk_table_t *out, const cs_tk_table_t *t);

/** The key that issues at now: of the keys in their issuing window, the
 * one whose window started last (deterministic across the pool); NULL if
 * none. */
const cs_tk_key_t *cs_tk_issuing(const cs_tk_table_t *t, apr_int64_t now);

/** The key named name that is accepted at now, or NULL. */
const cs_tk_key_t *cs_tk_find(const cs_tk_table_t *t,
                              const unsigned char *name, apr_int64_t now);

/**
 * The body of an SSL_CTX_set_tlsext_ticket_key_evp_cb callback over the
 * table t at now.  enc: fill name and iv, set up the contexts with the
 * issuing key, return 1 (0: no issuing key: no ticket is sent).  Else:
 * the key named name, if still accepted: set up the contexts, return 2
 * when another key issues now (the client gets a new ticket), 1 if it is
 * the issuing one; 0 if no such key (a full handshake).  -1 on an
 * OpenSSL failure.
 */
int cs_tk_ticket_cb(const cs_tk_table_t *t, apr_int64_t now,
                    unsigned char *name, unsigned char *iv,
                    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc);

#endif /* CS_TKEY_H */

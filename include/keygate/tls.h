/* TLS for the listeners: certificates a reload replaces, per connection. */
#ifndef KEYGATE_TLS_H
#define KEYGATE_TLS_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"

struct MHD_Connection;

/* A certificate or key file at most, in bytes. */
#define KG_TLS_FILE_MAX (1024 * 1024)
/* Certificates in one chain at most (the server's and its CAs'). */
#define KG_TLS_CHAIN_MAX 16
/* Room for kg_tls_creds_describe's text. */
#define KG_TLS_DESCRIBE_MAX 512

/*
 * A listener's certificate chain, private key and protocol versions, as
 * read from its files: reference counted, shared by every connection
 * that started while it was current. A reload makes a new one for the
 * connections that start after it; a connection keeps the one it started
 * with until it closes.
 */
typedef struct kg_tls_creds kg_tls_creds_t;

/*
 * Read cert_file (PEM: the server's certificate first, then its
 * intermediates) and key_file (PEM; refused when others may read it, like
 * a provider credential file), check that the key belongs to the
 * certificate, and prepare min_version ("1.2" or "1.3") as GnuTLS
 * priorities. what names the section in errors ("[server]"). On KG_OK
 * *out is new with one reference; on error (KG_ERR_CONFIG, KG_ERR_NOMEM)
 * *out is NULL and diag says why (never the key's bytes).
 */
kg_err_t kg_tls_creds_load(const char *cert_file, const char *key_file,
                           const char *min_version, const char *what,
                           kg_tls_creds_t **out, kg_diag_t *diag) KG_MUST_CHECK;

/* Take one more reference (any thread; one atomic increment). */
kg_tls_creds_t *kg_tls_creds_ref(kg_tls_creds_t *c);

/* Drop a reference (*c set to NULL; NULL is fine); the last frees. */
void kg_tls_creds_unref(kg_tls_creds_t **c);

/*
 * The certificate's subject, expiry and the versions, for the log: into
 * buf (KG_TLS_DESCRIBE_MAX), returned. *expires gets the expiry (unix
 * seconds).
 */
const char *kg_tls_creds_describe(const kg_tls_creds_t *c, char *buf,
                                  size_t len, int64_t *expires);

/*
 * The GnuTLS priority string of min_version ("1.2" or "1.3"), for
 * MHD_OPTION_HTTPS_PRIORITIES (static string).
 */
const char *kg_tls_priorities(const char *min_version);

/*
 * KG_OK when libmicrohttpd was built with TLS and the certificate
 * callback, else KG_ERR_CONFIG with diag.
 */
kg_err_t kg_tls_check_support(kg_diag_t *diag) KG_MUST_CHECK;

/*
 * What a TLS listener's libmicrohttpd socket context starts with (its
 * first member): the credentials its connection uses, which the
 * certificate callback finds through the session.
 */
typedef struct kg_tls_conn {
    kg_tls_creds_t *creds; /* one reference while the connection is open */
} kg_tls_conn_t;

/*
 * A connection of a TLS listener started (MHD_CONNECTION_NOTIFY_STARTED,
 * before its handshake): tc takes a reference to creds and the session
 * gets creds' protocol versions. creds NULL: the handshake will fail.
 */
void kg_tls_conn_open(kg_tls_conn_t *tc, struct MHD_Connection *conn,
                      kg_tls_creds_t *creds);

/* The connection closed (MHD_CONNECTION_NOTIFY_CLOSED): drop the reference. */
void kg_tls_conn_close(kg_tls_conn_t *tc);

/*
 * The certificate callback (MHD_OPTION_HTTPS_CERT_CALLBACK): the chain
 * and key of the connection's kg_tls_conn_t. 0, or -1 (the handshake
 * fails) when the connection has none.
 */
int kg_tls_cert_callback(gnutls_session_t session,
                         const gnutls_datum_t *req_ca_dn, int nreqs,
                         const gnutls_pk_algorithm_t *pk_algos,
                         int pk_algos_length, gnutls_pcert_st **pcert,
                         unsigned int *pcert_length, gnutls_privkey_t *pkey);

#endif /* KEYGATE_TLS_H */

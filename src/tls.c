/* TLS for the listeners: certificates a reload replaces, per connection. */
#include "keygate/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keygate/timefmt.h"

/* A public key id (SHA-256) in bytes. */
#define TLS_KEY_ID_MAX 64

struct kg_tls_creds {
    atomic_int refs;
    gnutls_pcert_st chain[KG_TLS_CHAIN_MAX];
    unsigned int nchain;
    gnutls_privkey_t key;
    gnutls_priority_t priorities;
    char min_version[4];
    char subject[256];
    int64_t expires;
};

/* TLS 1.2 or newer; or 1.3 only. GnuTLS's defaults otherwise. */
static const char tls_prio_12[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
static const char tls_prio_13[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3";

const char *kg_tls_priorities(const char *min_version)
{
    return strcmp(min_version, "1.3") == 0 ? tls_prio_13 : tls_prio_12;
}

kg_err_t kg_tls_check_support(kg_diag_t *diag)
{
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
        MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "this libmicrohttpd has no TLS support (GnuTLS "
                            "with the certificate callback)");
    }
    return KG_OK;
}

/* Free a file read by tls_read_file, wiping it first (a key). */
static void tls_file_free(gnutls_datum_t *d)
{
    if (d->data != NULL) {
        sodium_memzero(d->data, d->size);
        free(d->data);
    }
    d->data = NULL;
    d->size = 0;
}

/*
 * Read path whole into *out (NUL-terminated, size without it). A key must
 * not be accessible by others. diag names the file as "<what> <kind>".
 */
static kg_err_t tls_read_file(const char *path, bool key, const char *what,
                              gnutls_datum_t *out, kg_diag_t *diag)
{
    const char *kind = key ? "tls_key_file" : "tls_cert_file";
    struct stat st;
    kg_err_t rc = KG_OK;
    size_t n = 0;
    int fd;

    out->data = NULL;
    out->size = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return kg_diag_fail(diag, KG_ERR_CONFIG, "%s %s: cannot open %s: %s",
                            what, kind, path, strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > KG_TLS_FILE_MAX) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                          "%s %s: %s is not a regular file of 1 byte to %d "
                          "bytes",
                          what, kind, path, KG_TLS_FILE_MAX);
        goto out;
    }
    if (key && (st.st_mode & 007) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                          "%s %s: %s is accessible by others (mode %03o); run "
                          "chmod 600 (or 640) on it",
                          what, kind, path, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    out->data = malloc((size_t)st.st_size + 1);
    if (out->data == NULL) {
        rc = kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
        goto out;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, out->data + n, (size_t)st.st_size - n);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            rc = kg_diag_fail(diag, KG_ERR_CONFIG, "%s %s: cannot read %s",
                              what, kind, path);
            goto out;
        }
        n += (size_t)r;
    }
    out->data[n] = '\0';
    out->size = (unsigned int)n;
out:
    close(fd);
    if (rc != KG_OK) {
        tls_file_free(out);
    }
    return rc;
}

/* Subject and expiry of the first certificate, for the log. */
static void tls_note_cert(kg_tls_creds_t *c)
{
    gnutls_x509_crt_t crt = NULL;
    size_t len = sizeof(c->subject);

    snprintf(c->subject, sizeof(c->subject), "?");
    c->expires = -1;
    if (gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS) {
        return;
    }
    if (gnutls_x509_crt_import(crt, &c->chain[0].cert, GNUTLS_X509_FMT_DER) ==
        GNUTLS_E_SUCCESS) {
        if (gnutls_x509_crt_get_dn(crt, c->subject, &len) != GNUTLS_E_SUCCESS) {
            snprintf(c->subject, sizeof(c->subject), "?");
        }
        c->expires = (int64_t)gnutls_x509_crt_get_expiration_time(crt);
    }
    gnutls_x509_crt_deinit(crt);
}

/* Whether the private key is the one of the chain's first certificate. */
static bool tls_key_matches(kg_tls_creds_t *c)
{
    gnutls_pubkey_t pub = NULL;
    unsigned char a[TLS_KEY_ID_MAX];
    unsigned char b[TLS_KEY_ID_MAX];
    size_t alen = sizeof(a);
    size_t blen = sizeof(b);
    bool ok = false;

    if (gnutls_pubkey_init(&pub) != GNUTLS_E_SUCCESS) {
        return false;
    }
    if (gnutls_pubkey_import_privkey(pub, c->key, 0, 0) == GNUTLS_E_SUCCESS &&
        gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &alen) ==
            GNUTLS_E_SUCCESS &&
        gnutls_pubkey_get_key_id(c->chain[0].pubkey, GNUTLS_KEYID_USE_SHA256, b,
                                 &blen) == GNUTLS_E_SUCCESS) {
        ok = alen == blen && memcmp(a, b, alen) == 0;
    }
    gnutls_pubkey_deinit(pub);
    return ok;
}

static void tls_creds_free(kg_tls_creds_t *c)
{
    for (unsigned int i = 0; i < c->nchain; i++) {
        gnutls_pcert_deinit(&c->chain[i]);
    }
    if (c->key != NULL) {
        gnutls_privkey_deinit(c->key);
    }
    if (c->priorities != NULL) {
        gnutls_priority_deinit(c->priorities);
    }
    free(c);
}

kg_err_t kg_tls_creds_load(const char *cert_file, const char *key_file,
                           const char *min_version, const char *what,
                           kg_tls_creds_t **out, kg_diag_t *diag)
{
    kg_tls_creds_t *c = calloc(1, sizeof(*c));
    gnutls_datum_t cert = {NULL, 0};
    gnutls_datum_t key = {NULL, 0};
    kg_err_t rc = KG_OK;
    int g;

    *out = NULL;
    if (c == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    atomic_init(&c->refs, 1);
    snprintf(c->min_version, sizeof(c->min_version), "%s", min_version);
    rc = tls_read_file(cert_file, false, what, &cert, diag);
    if (rc == KG_OK) {
        rc = tls_read_file(key_file, true, what, &key, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    c->nchain = KG_TLS_CHAIN_MAX;
    g = gnutls_pcert_list_import_x509_raw(c->chain, &c->nchain, &cert,
                                          GNUTLS_X509_FMT_PEM, 0);
    if (g < 0 || c->nchain == 0) {
        c->nchain = 0;
        rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                          "%s tls_cert_file: %s holds no usable PEM "
                          "certificate chain (at most %d certificates): %s",
                          what, cert_file, KG_TLS_CHAIN_MAX,
                          g < 0 ? gnutls_strerror(g) : "none found");
        goto out;
    }
    g = gnutls_privkey_init(&c->key);
    if (g == GNUTLS_E_SUCCESS) {
        g = gnutls_privkey_import_x509_raw(c->key, &key, GNUTLS_X509_FMT_PEM,
                                           NULL, 0);
    }
    if (g != GNUTLS_E_SUCCESS) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                          "%s tls_key_file: %s is not a PEM private key "
                          "without a password: %s",
                          what, key_file, gnutls_strerror(g));
        goto out;
    }
    if (!tls_key_matches(c)) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                          "%s tls_key_file: %s is not the key of the "
                          "certificate in %s",
                          what, key_file, cert_file);
        goto out;
    }
    g = gnutls_priority_init(&c->priorities, kg_tls_priorities(min_version),
                             NULL);
    if (g != GNUTLS_E_SUCCESS) {
        c->priorities = NULL;
        rc = kg_diag_fail(diag, KG_ERR_INTERNAL, "%s TLS priorities: %s", what,
                          gnutls_strerror(g));
        goto out;
    }
    tls_note_cert(c);
out:
    tls_file_free(&cert);
    tls_file_free(&key);
    if (rc != KG_OK) {
        tls_creds_free(c);
        return rc;
    }
    *out = c;
    return KG_OK;
}

kg_tls_creds_t *kg_tls_creds_ref(kg_tls_creds_t *c)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    }
    return c;
}

void kg_tls_creds_unref(kg_tls_creds_t **c)
{
    if (c == NULL || *c == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&(*c)->refs, 1, memory_order_acq_rel) == 1) {
        tls_creds_free(*c);
    }
    *c = NULL;
}

const char *kg_tls_creds_describe(const kg_tls_creds_t *c, char *buf,
                                  size_t len, int64_t *expires)
{
    char when[KG_TIME_STRLEN];

    *expires = c->expires;
    snprintf(buf, len, "%.200s, %u certificate%s, expires %s, TLS %s or newer",
             c->subject, c->nchain, c->nchain == 1 ? "" : "s",
             c->expires >= 0 ? kg_time_format(c->expires, when, sizeof(when))
                             : "?",
             c->min_version);
    return buf;
}

void kg_tls_conn_open(kg_tls_conn_t *tc, struct MHD_Connection *conn,
                      kg_tls_creds_t *creds)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);

    tc->creds = kg_tls_creds_ref(creds);
    if (creds != NULL && ci != NULL && ci->tls_session != NULL) {
        /* The versions of this generation, for this handshake. */
        gnutls_priority_set((gnutls_session_t)ci->tls_session,
                            creds->priorities);
    }
}

void kg_tls_conn_close(kg_tls_conn_t *tc)
{
    kg_tls_creds_unref(&tc->creds);
}

int kg_tls_cert_callback(gnutls_session_t session,
                         const gnutls_datum_t *req_ca_dn, int nreqs,
                         const gnutls_pk_algorithm_t *pk_algos,
                         int pk_algos_length, gnutls_pcert_st **pcert,
                         unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    /* libmicrohttpd keeps the connection as the session's pointer. */
    struct MHD_Connection *conn = gnutls_session_get_ptr(session);
    const union MHD_ConnectionInfo *ci =
        conn == NULL
            ? NULL
            : MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const kg_tls_conn_t *tc = ci != NULL ? ci->socket_context : NULL;

    (void)req_ca_dn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    if (tc == NULL || tc->creds == NULL) {
        return -1;
    }
    *pcert = tc->creds->chain;
    *pcert_length = tc->creds->nchain;
    *pkey = tc->creds->key;
    return 0;
}

/* TLS on the listeners: certificates, plain clients, reloads, exposure. */
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway_fixture.h"

#define TLS_WAIT_MS 10000
#define SUBJECT_MAX 256
#define TLS_FILES   "tls_cert_file = server.pem\ntls_key_file = server.key\n"
#define SAN_EXT                                                  \
    "subjectAltName = IP:127.0.0.1, DNS:localhost\n"             \
    "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\n" \
    "extendedKeyUsage = serverAuth\n"

static void setup_root(void)
{
    gwf_root_new("kg-tls");
}

static void teardown_root(void)
{
    gwf_root_free();
}

/* ---- certificates, made with openssl ------------------------------------ */

/* Run openssl with the arguments (NULL-terminated) in dir, asserted. */
__attribute__((sentinel)) static void openssl(const char *dir,
                                              const char *first, ...)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {"openssl", first};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 30000};
    kg_harness_result_t r = {0};
    char cwd[PATH_MAX];
    va_list ap;

    va_start(ap, first);
    gwf_args_append(argv, 2, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(dir), 0);
    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_msg(r.status == 0, "openssl %s: exit %d: %s", first, r.status,
                  r.err);
    kg_harness_result_free(&r);
}

/* A test CA in dir: ca.pem and ca.key. */
static void make_ca(const char *dir)
{
    openssl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-subj", "/CN=keygate test CA", "-days", "2",
            NULL);
}

/* name.pem (signed by the CA, for 127.0.0.1 and localhost, subject
 * CN=cn) and name.key (mode 0600) in dir. */
static void make_cert(const char *dir, const char *name, const char *cn,
                      const char *serial)
{
    char key[64];
    char csr[64];
    char pem[64];
    char subj[128];
    char path[PATH_MAX];

    snprintf(key, sizeof(key), "%s.key", name);
    snprintf(csr, sizeof(csr), "%s.csr", name);
    snprintf(pem, sizeof(pem), "%s.pem", name);
    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    ck_assert(kg_harness_path(path, sizeof(path), dir, "san.ext"));
    ck_assert_int_eq(
        kg_harness_write_file(path, SAN_EXT, strlen(SAN_EXT), 0644), 0);
    openssl(dir, "req", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
            csr, "-subj", subj, NULL);
    openssl(dir, "x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey",
            "ca.key", "-set_serial", serial, "-days", "2", "-out", pem,
            "-extfile", "san.ext", NULL);
    ck_assert(kg_harness_path(path, sizeof(path), dir, key));
    ck_assert_int_eq(chmod(path, 0600), 0);
}

/* Copy file from to file to in dir (mode 0600), as a renewal would. */
static void install(const char *dir, const char *from, const char *to)
{
    char src[PATH_MAX];
    char dst[PATH_MAX];
    char *data = NULL;
    size_t len = 0;

    ck_assert(kg_harness_path(src, sizeof(src), dir, from));
    ck_assert(kg_harness_path(dst, sizeof(dst), dir, to));
    ck_assert_int_eq(kg_harness_read_file(src, &data, &len), 0);
    ck_assert_int_eq(kg_harness_write_file(dst, data, len, 0600), 0);
    free(data);
}

/* ---- HTTPS with libcurl ------------------------------------------------- */

typedef struct tls_resp {
    long status;
    int curl_rc;
    char subject[SUBJECT_MAX]; /* the server certificate's subject */
    char *body;
    size_t body_len;
    char *headers;
    size_t headers_len;
} tls_resp_t;

/* Where tls_sink appends. */
typedef struct tls_sinkbuf {
    char *data;
    size_t len;
} tls_sinkbuf_t;

static size_t tls_sink(char *data, size_t size, size_t n, void *ud)
{
    tls_sinkbuf_t *b = ud;
    char *grown = realloc(b->data, b->len + size * n + 1);

    ck_assert_ptr_nonnull(grown);
    memcpy(grown + b->len, data, size * n);
    b->len += size * n;
    grown[b->len] = '\0';
    b->data = grown;
    return size * n;
}

/*
 * method https://127.0.0.1:port/path, trusting the CA file ca, with one
 * header line (may be NULL) and a body (may be NULL); tls_max: the
 * highest TLS version offered (CURL_SSLVERSION_MAX_*, 0: libcurl's).
 */
static void tls_http(int port, const char *ca, const char *method,
                     const char *path, const char *header, const char *body,
                     long tls_max, tls_resp_t *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *list = NULL;
    struct curl_certinfo *ci = NULL;
    tls_sinkbuf_t b = {NULL, 0};
    tls_sinkbuf_t h = {NULL, 0};
    char url[256];

    memset(r, 0, sizeof(*r));
    ck_assert_ptr_nonnull(c);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", port, path);
    if (header != NULL) {
        list = curl_slist_append(list, header);
    }
    list = curl_slist_append(list, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_SSLVERSION,
                     (long)CURL_SSLVERSION_TLSv1_2 | tls_max);
    curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tls_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, tls_sink);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)GWF_HTTP_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    r->curl_rc = (int)curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo(c, CURLINFO_CERTINFO, &ci) == CURLE_OK &&
        ci != NULL && ci->num_of_certs > 0) {
        for (struct curl_slist *s = ci->certinfo[0]; s != NULL; s = s->next) {
            if (strncmp(s->data, "Subject:", 8) == 0) {
                snprintf(r->subject, sizeof(r->subject), "%s", s->data + 8);
            }
        }
    }
    r->body = b.data;
    r->body_len = b.len;
    r->headers = h.data;
    r->headers_len = h.len;
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
}

static void tls_resp_free(tls_resp_t *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

/* GET path over TLS with k's key: 200 asserted; returns the subject. */
static void assert_https_ok(const gwf_t *f, const char *ca, const gwf_key_t *k,
                            const char *want_subject)
{
    char cred[160];
    tls_resp_t r;

    tls_http(f->gw_port, ca, "GET", "/v1/models",
             gwf_bearer(k, cred, sizeof(cred)), NULL, 0, &r);
    ck_assert_msg(r.curl_rc == CURLE_OK, "curl: %s",
                  curl_easy_strerror((CURLcode)r.curl_rc));
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"gpt-4o\""));
    ck_assert_msg(strstr(r.subject, want_subject) != NULL, "subject %s, not %s",
                  r.subject, want_subject);
    tls_resp_free(&r);
}

/* The generation the admin listener's /readyz reports over TLS. */
static json_int_t generation_tls(const gwf_t *f, const char *ca)
{
    json_int_t n = -1;
    tls_resp_t r;
    json_t *j;

    tls_http(f->admin_port, ca, "GET", "/readyz", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    j = json_loads(r.body, 0, NULL);
    n = json_integer_value(
        json_object_get(json_object_get(j, "config"), "generation"));
    json_decref(j);
    tls_resp_free(&r);
    return n;
}

/* A world whose listeners both speak TLS with server.pem (CN first). */
static void start_tls_world(gwf_t *f, gwf_key_t *k, char *ca, size_t ca_len)
{
    gwf_init(f, false);
    make_ca(f->dir);
    make_cert(f->dir, "first", "keygate first", "1");
    install(f->dir, "first.pem", "server.pem");
    install(f->dir, "first.key", "server.key");
    ck_assert(kg_harness_path(ca, ca_len, f->dir, "ca.pem"));
    f->admin_extra = TLS_FILES;
    gwf_config(f, TLS_FILES, NULL, NULL);
    gwf_init_store(f);
    gwf_key_create(f, k, "tls", NULL);
    gwf_start(f);
}

/*
 * Both listeners speak TLS: curl --cacert gets the models, the admin
 * listener's health and a sign-in whose cookie is Secure; a client
 * without the CA refuses the certificate; a plain-HTTP client is cut
 * without an HTTP answer and the daemon serves on.
 */
START_TEST(test_tls_listeners)
{
    kg_harness_result_t res = {0};
    char ca[PATH_MAX];
    char url[128];
    char auth[160];
    char admin[GWF_ADMIN_TOKEN_MAX];
    char body[GWF_ADMIN_TOKEN_MAX + 32];
    const char *argv[] = {"curl", "-sS", "--cacert", ca, "-H", auth, url, NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 20000};
    const char *no_ca[] = {"curl", "-sS", url, NULL};
    kg_harness_cmd_t cmd_no_ca = {no_ca, NULL, NULL, 0, 20000};
    gwf_buf_t b = {0};
    tls_resp_t r;
    gwf_key_t k;
    gwf_t f;
    int fd;

    start_tls_world(&f, &k, ca, sizeof(ca));
    gwf_admin_token(&f, "tls", admin, sizeof(admin));
    ck_assert(gwf_log_count(f.gw_err, ", TLS)") == 2);
    ck_assert(gwf_log_count(f.gw_err, "TLS certificate CN=keygate first") == 2);

    /* curl with the CA. */
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/v1/models", f.gw_port);
    gwf_bearer(&k, auth, sizeof(auth));
    ck_assert_int_eq(kg_harness_run(&cmd, &res), 0);
    ck_assert_msg(res.status == 0, "curl: %s", res.err);
    ck_assert_ptr_nonnull(strstr(res.out, "\"object\":\"list\""));
    kg_harness_result_free(&res);
    /* ... and without it: the certificate is not trusted. */
    ck_assert_int_eq(kg_harness_run(&cmd_no_ca, &res), 0);
    ck_assert_int_eq(res.status, 60); /* CURLE_PEER_FAILED_VERIFICATION */
    kg_harness_result_free(&res);

    /* TLS 1.2 and 1.3 both work by default. */
    {
        char cred[160];

        tls_http(f.gw_port, ca, "GET", "/v1/models",
                 gwf_bearer(&k, cred, sizeof(cred)), NULL,
                 CURL_SSLVERSION_MAX_TLSv1_2, &r);
        ck_assert_int_eq(r.curl_rc, CURLE_OK);
        ck_assert_int_eq(r.status, 200);
        tls_resp_free(&r);
        tls_http(f.gw_port, ca, "POST", "/v1/chat/completions",
                 gwf_bearer(&k, cred, sizeof(cred)),
                 "{\"model\":\"gpt-4o\",\"messages\":[]}",
                 CURL_SSLVERSION_MAX_TLSv1_3, &r);
        ck_assert_int_eq(r.curl_rc, CURLE_OK);
        ck_assert_int_eq(r.status, 200);
        ck_assert_ptr_nonnull(strstr(r.body, "chat.completion"));
        tls_resp_free(&r);
    }

    /* The admin listener: health, and a sign-in with a Secure cookie. */
    tls_http(f.admin_port, ca, "GET", "/healthz", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.curl_rc, CURLE_OK);
    ck_assert_int_eq(r.status, 200);
    tls_resp_free(&r);
    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", admin);
    tls_http(f.admin_port, ca, "POST", "/admin/v1/session", NULL, body, 0, &r);
    ck_assert_int_eq(r.status, 201);
    ck_assert_msg(
        strstr(r.headers, "; HttpOnly; SameSite=Strict; Secure\r\n") != NULL,
        "%s", r.headers);
    tls_resp_free(&r);

    /* Plain HTTP to the TLS port: closed, never an HTTP answer. */
    fd = gwf_connect(f.gw_port);
    ck_assert_int_ge(fd, 0);
    ck_assert(
        gwf_send_all(fd, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 37));
    ck_assert_msg(gwf_wait_closed(fd, &b, 5000),
                  "a plain-HTTP client was left hanging");
    close(fd);
    ck_assert(b.data == NULL || strstr(b.data, "HTTP/") == NULL);
    gwf_buf_free(&b);
    fd = gwf_connect(f.admin_port);
    ck_assert_int_ge(fd, 0);
    ck_assert(gwf_send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 35));
    ck_assert(gwf_wait_closed(fd, &b, 5000));
    close(fd);
    ck_assert(b.data == NULL || strstr(b.data, "HTTP/") == NULL);
    gwf_buf_free(&b);
    assert_https_ok(&f, ca, &k, "keygate first");

    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_assert_absent(f.gw_err, "PRIVATE KEY", "the daemon's log");
    gwf_free(&f);
}
END_TEST

/*
 * A renewal: new files and SIGHUP, and new connections get the new
 * certificate on both listeners. A pair whose key does not match is
 * refused (the certificate in use stays); tls_min_version = 1.3 reloads
 * too (a TLS 1.2 client is then refused).
 */
START_TEST(test_tls_reload)
{
    char ca[PATH_MAX];
    char cred[160];
    tls_resp_t r;
    gwf_key_t k;
    gwf_t f;

    start_tls_world(&f, &k, ca, sizeof(ca));
    make_cert(f.dir, "second", "keygate second", "2");
    make_cert(f.dir, "third", "keygate third", "3");
    assert_https_ok(&f, ca, &k, "keygate first");

    install(f.dir, "second.pem", "server.pem");
    install(f.dir, "second.key", "server.key");
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(
        gwf_log_wait(f.gw_err, "reload: configuration 2 in use", TLS_WAIT_MS));
    assert_https_ok(&f, ca, &k, "keygate second");
    tls_http(f.admin_port, ca, "GET", "/healthz", NULL, NULL, 0, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.subject, "keygate second"));
    tls_resp_free(&r);
    ck_assert_int_eq(generation_tls(&f, ca), 2);

    /* A certificate with another certificate's key: refused. */
    install(f.dir, "third.pem", "server.pem");
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(gwf_log_wait(f.gw_err, "is not the key of the certificate",
                           TLS_WAIT_MS));
    ck_assert_int_eq(gwf_log_count(f.gw_err, "reload refused: "), 1);
    assert_https_ok(&f, ca, &k, "keygate second");

    /* TLS 1.3 only, with the third pair. */
    install(f.dir, "third.key", "server.key");
    f.admin_extra = TLS_FILES;
    gwf_config(&f, TLS_FILES "tls_min_version = 1.3\n", NULL, NULL);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(
        gwf_log_wait(f.gw_err, "reload: configuration 3 in use", TLS_WAIT_MS));
    assert_https_ok(&f, ca, &k, "keygate third");
    tls_http(f.gw_port, ca, "GET", "/v1/models",
             gwf_bearer(&k, cred, sizeof(cred)), NULL,
             CURL_SSLVERSION_MAX_TLSv1_2, &r);
    ck_assert_msg(r.curl_rc != CURLE_OK, "TLS 1.2 accepted after 1.3 only");
    tls_resp_free(&r);
    /* The admin listener kept 1.2. */
    tls_http(f.admin_port, ca, "GET", "/healthz", NULL, NULL,
             CURL_SSLVERSION_MAX_TLSv1_2, &r);
    ck_assert_int_eq(r.curl_rc, CURLE_OK);
    ck_assert_ptr_nonnull(strstr(r.subject, "keygate third"));
    tls_resp_free(&r);

    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_free(&f);
}
END_TEST

/* The world's configuration with [admin] listen = listen and the lines
 * extra (may be NULL). */
static void admin_config(gwf_t *f, const char *listen, const char *extra)
{
    char line[128];

    f->admin_extra = extra;
    gwf_config(f, NULL, NULL, NULL);
    snprintf(line, sizeof(line), "[admin]\nlisten = %s\n", listen);
    gwf_config_replace(f, "[admin]\nlisten = 127.0.0.1:0\n", line);
}

/*
 * The admin listener on an address other than loopback: refused without
 * TLS (config check and serve, naming the setting that allows it), fine
 * with TLS or allow_insecure. Nothing binds such an address here: the
 * refusal comes first, and the accepted files are only checked.
 */
START_TEST(test_admin_exposure)
{
    kg_harness_result_t res = {0};
    gwf_t f;

    gwf_init(&f, false);
    make_ca(f.dir);
    make_cert(f.dir, "server", "keygate exposed", "4");
    gwf_config(&f, NULL, NULL, NULL);
    gwf_init_store(&f);

    admin_config(&f, "0.0.0.0:0", NULL);
    ck_assert_int_eq(gwf_kg(&f, &res, "config", "check", NULL), 1);
    ck_assert_ptr_nonnull(strstr(res.err, "allow_insecure"));
    ck_assert_ptr_nonnull(strstr(res.err, "0.0.0.0:0"));
    ck_assert_int_eq(gwf_kg(&f, &res, "serve", NULL), 1);
    ck_assert_ptr_nonnull(strstr(res.err, "allow_insecure = on"));

    admin_config(&f, "0.0.0.0:0", "allow_insecure = on\n");
    ck_assert_int_eq(gwf_kg(&f, &res, "config", "check", NULL), 0);
    admin_config(&f, "[::]:0", TLS_FILES);
    ck_assert_int_eq(gwf_kg(&f, &res, "config", "check", NULL), 0);
    /* A loopback address needs neither. */
    admin_config(&f, "[::1]:0", NULL);
    ck_assert_int_eq(gwf_kg(&f, &res, "config", "check", NULL), 0);

    /* config check reads the certificates as serve would. */
    admin_config(&f, "[::]:0",
                 "tls_cert_file = server.pem\ntls_key_file = ca.key\n");
    ck_assert_int_eq(gwf_kg(&f, &res, "config", "check", NULL), 1);
    ck_assert_ptr_nonnull(strstr(res.err, "[admin] tls_key_file"));
    kg_harness_result_free(&res);
    gwf_free(&f);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls");

    tcase_add_unchecked_fixture(tc, setup_root, teardown_root);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tls_listeners);
    tcase_add_test(tc, test_tls_reload);
    tcase_add_test(tc, test_admin_exposure);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(tls_suite());
}

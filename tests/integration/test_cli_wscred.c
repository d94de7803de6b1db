/* Integration tests of 'keygate workspaces credential' and the secret key. */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keygate/store.h"

#include "harness.h"
#include "keygate/store.h"

#define ERROR_LINE_MAX 300 /* an error is one short line */
#define MAX_SECRETS    16
#define CASE_ARGS      10

/* Credentials of the tests: distinctive, so a byte search finds them. */
#define SECRET_A    "sk-proj-IntegrationSecretA-0123456789abcdefAAAA"
#define SECRET_B    "sk-ant-IntegrationSecretB-9876543210zyxwvuBBBB"
#define SECRET_C    "sk-IntegrationSecretC-from-stdin-55555555CCCC"
#define SECRET_D    "sk-IntegrationSecretD-replacement-7777777DDDD"
#define SECRET_ARGV "sk-ArgvSecret-NeverEchoed-1234567890abcdef"
#define SECRET_BAD  "sk-RefusedSecret-1234567890-EEEE"

/* Each test's files, under a directory made by the parent. */
static char *g_root;
static const char *g_bin;
static char g_dir[PATH_MAX];
static char g_cfg[PATH_MAX];
static char g_state[PATH_MAX];
static char g_db[PATH_MAX];
static char g_secretkey[PATH_MAX];

/* The last command's result. */
static kg_harness_result_t R;

/* Strings no output of any command may contain. */
static const char *g_secrets[MAX_SECRETS];
static size_t g_nsecrets;

/* ---- fixtures -------------------------------------------------------- */

static void setup_root(void)
{
    g_root = kg_harness_tmpdir_new("kg-cli-wscred");
    ck_assert_ptr_nonnull(g_root);
}

static void teardown_root(void)
{
    ck_assert_int_eq(kg_harness_rmtree(g_root), 0);
    free(g_root);
    g_root = NULL;
}

/* A config with two providers; extra lines go to [security]. */
static void write_config(const char *security_extra)
{
    char text[4 * PATH_MAX];
    int n = snprintf(text, sizeof(text),
                     "[store]\npath = %s/keygate.db\n\n[security]\n"
                     "hash_key_file = %s/hash.key\n%s\n"
                     "[provider openai]\ntype = openai\n"
                     "base_url = https://api.openai.com/v1\n\n"
                     "[provider anthropic]\ntype = anthropic\n"
                     "base_url = https://api.anthropic.com/v1\n",
                     g_state, g_state, security_extra ? security_extra : "");

    ck_assert(n > 0 && (size_t)n < sizeof(text));
    ck_assert_int_eq(kg_harness_write_file(g_cfg, text, (size_t)n, 0644), 0);
}

static void remember_secret(const char *s)
{
    ck_assert_uint_lt(g_nsecrets, MAX_SECRETS);
    g_secrets[g_nsecrets++] = s;
}

static void setup_dir(void)
{
    char tmpl[PATH_MAX];
    int n;

    g_bin = kg_harness_bin("KEYGATE_BIN");
    n = snprintf(tmpl, sizeof(tmpl), "%s/t.XXXXXX", g_root);
    ck_assert(n > 0 && (size_t)n < sizeof(tmpl));
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(g_dir, tmpl, (size_t)n + 1);
    ck_assert(kg_harness_path(g_cfg, sizeof(g_cfg), g_dir, "keygate.ini"));
    ck_assert(kg_harness_path(g_state, sizeof(g_state), g_dir, "state"));
    ck_assert(kg_harness_path(g_db, sizeof(g_db), g_state, "keygate.db"));
    /* Not in the config: it defaults to the hash key's directory. */
    ck_assert(kg_harness_path(g_secretkey, sizeof(g_secretkey), g_state,
                              "secret.key"));
    write_config(NULL);
    g_nsecrets = 0;
    remember_secret(SECRET_A);
    remember_secret(SECRET_B);
    remember_secret(SECRET_C);
    remember_secret(SECRET_D);
    remember_secret(SECRET_ARGV);
    remember_secret(SECRET_BAD);
}

static void teardown(void)
{
    kg_harness_result_free(&R);
}

/* ---- running keygate ------------------------------------------------- */

/* Neither output of the last command holds a remembered secret, nor a
 * 16-byte piece of one. */
static void assert_outputs_clean(void)
{
    for (size_t i = 0; i < g_nsecrets; i++) {
        const char *s = g_secrets[i];
        size_t len = strlen(s);

        for (size_t off = 0; off + 16 <= len; off += 8) {
            ck_assert_msg(memmem(R.out, R.out_len, s + off, 16) == NULL,
                          "a secret appears on stdout: %s", R.out);
            ck_assert_msg(memmem(R.err, R.err_len, s + off, 16) == NULL,
                          "a secret appears on stderr: %s", R.err);
        }
    }
}

/* Run keygate -c CONFIG argv... with extra env and stdin; result in R. */
static int run(const char *const *args, const char *const *env,
               const char *stdin_data)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, "-c", g_cfg};
    kg_harness_cmd_t cmd = {argv, env, stdin_data,
                            stdin_data ? strlen(stdin_data) : 0, 0};
    size_t n = 3;

    for (size_t i = 0; args[i] != NULL; i++) {
        ck_assert_uint_lt(n, KG_HARNESS_MAX_ARGS - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    kg_harness_result_free(&R);
    ck_assert_msg(kg_harness_run(&cmd, &R) == 0, "cannot run keygate: %s",
                  R.err);
    ck_assert_msg(!R.timed_out && !R.signaled, "keygate %s died: %s", args[0],
                  R.err);
    assert_outputs_clean();
    return R.status;
}

/* keygate -c CONFIG ARGS... NULL */
__attribute__((sentinel)) static int kg(const char *first, ...)
{
    const char *args[KG_HARNESS_MAX_ARGS] = {first};
    size_t n = 1;
    va_list ap;

    va_start(ap, first);
    for (const char *a = va_arg(ap, const char *); a != NULL;
         a = va_arg(ap, const char *)) {
        ck_assert_uint_lt(n, KG_HARNESS_MAX_ARGS - 1);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    return run(args, NULL, NULL);
}

static void assert_ok(void)
{
    ck_assert_msg(R.status == 0, "exit %d, stderr: %s", R.status, R.err);
    ck_assert_msg(R.err_len == 0, "stderr not empty: %s", R.err);
}

/* Failed with code: nothing on stdout, one short "keygate: " line with
 * needle on stderr. */
static void assert_fail(int code, const char *needle)
{
    const char *nl = memchr(R.err, '\n', R.err_len);

    ck_assert_msg(R.status == code, "exit %d, expected %d; stderr: %s",
                  R.status, code, R.err);
    ck_assert_msg(R.out_len == 0, "stdout not empty: %s", R.out);
    ck_assert_msg(strncmp(R.err, "keygate: ", 9) == 0, "stderr: %s", R.err);
    ck_assert_msg(nl != NULL && nl == R.err + R.err_len - 1,
                  "stderr is not one line: %s", R.err);
    ck_assert_msg(R.err_len <= ERROR_LINE_MAX, "error too long: %s", R.err);
    if (needle != NULL) {
        ck_assert_msg(strstr(R.err, needle) != NULL, "error lacks '%s': %s",
                      needle, R.err);
    }
}

static void assert_out_has(const char *needle)
{
    ck_assert_msg(strstr(R.out, needle) != NULL, "stdout lacks '%s': %s",
                  needle, R.out);
}

static json_t *out_json(void)
{
    json_error_t e;
    json_t *j = json_loads(R.out, 0, &e);

    ck_assert_msg(j != NULL, "stdout is not JSON (%s): %s", e.text, R.out);
    return j;
}

/* ---- the state -------------------------------------------------------- */

/* No file of the state directory and no row of the store holds s. */
static void assert_store_clean(const char *s)
{
    static const char *const files[] = {"keygate.db", "keygate.db-wal",
                                        "keygate.db-shm", "hash.key",
                                        "secret.key"};
    char *dump = NULL;

    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        char path[PATH_MAX];

        ck_assert(kg_harness_path(path, sizeof(path), g_state, files[i]));
        ck_assert_msg(kg_harness_file_contains(path, s, strlen(s)) == 0,
                      "a secret is in %s", files[i]);
        if (kg_harness_exists(path)) {
            ck_assert_msg(kg_harness_file_mode(path) == 0600, "%s: mode %o",
                          files[i], (unsigned)kg_harness_file_mode(path));
        }
    }
    ck_assert_int_eq(kg_harness_store_dump(g_db, &dump), 0);
    ck_assert_msg(strstr(dump, s) == NULL, "a secret is in the store dump");
    free(dump);
}

static void assert_all_clean(void)
{
    for (size_t i = 0; i < g_nsecrets; i++) {
        assert_store_clean(g_secrets[i]);
    }
}

/* Every table of the store and the secret key file, as text. New. */
static char *snapshot(void)
{
    char *dump = NULL;
    char *key = NULL;
    size_t klen = 0;
    char *text;
    size_t len;

    ck_assert_msg(kg_harness_store_dump(g_db, &dump) == 0, "dump: %s",
                  dump ? dump : "?");
    if (kg_harness_read_file(g_secretkey, &key, &klen) != 0) {
        key = NULL;
        klen = 0;
    }
    len = strlen(dump) + 2 * klen + 64;
    text = malloc(len);
    ck_assert_ptr_nonnull(text);
    snprintf(text, len, "%s\n# secret.key (%zu bytes)\n", dump, klen);
    for (size_t i = 0; i < klen; i++) {
        size_t used = strlen(text);

        snprintf(text + used, len - used, "%02x", (unsigned char)key[i]);
    }
    free(dump);
    free(key);
    return text;
}

static void assert_snapshot_same(const char *before, const char *what)
{
    char *after = snapshot();

    ck_assert_msg(strcmp(before, after) == 0,
                  "%s changed the state:\nbefore:\n%s\nafter:\n%s", what,
                  before, after);
    free(after);
}

/* init, then SECRET_A as the openai credential of the default workspace. */
static void setup_store(void)
{
    static const char *const args[] = {"workspaces", "credential",   "set",
                                       "default",    "--provider",   "openai",
                                       "--from-env", "KG_TEST_CRED", NULL};
    static const char *const env[] = {"KG_TEST_CRED=" SECRET_A, NULL};

    setup_dir();
    ck_assert_int_eq(kg("init", NULL), 0);
    assert_ok();
    ck_assert_int_eq(run(args, env, NULL), 0);
    assert_ok();
}

/* The credentials of workspace ws from list --json (new reference). */
static json_t *cred_list(const char *ws)
{
    json_t *j;
    json_t *arr;

    ck_assert_int_eq(kg("--json", "workspaces", "credential", "list", ws, NULL),
                     0);
    assert_ok();
    j = out_json();
    arr = json_incref(json_object_get(j, "credentials"));
    ck_assert(json_is_array(arr));
    json_decref(j);
    return arr;
}

/* ---- init -------------------------------------------------------------- */

START_TEST(test_init_creates_the_secret_key)
{
    char *key1 = NULL;
    char *key2 = NULL;
    char *hash = NULL;
    size_t len1 = 0;
    size_t len2 = 0;
    json_t *j;

    ck_assert_int_eq(kg("init", NULL), 0);
    assert_ok();
    assert_out_has("Secret key: ");
    assert_out_has("secret.key (created)");
    ck_assert_int_eq(kg_harness_file_mode(g_secretkey), 0600);
    ck_assert_int_eq(kg_harness_read_file(g_secretkey, &key1, &len1), 0);
    ck_assert_uint_eq(len1, 32);
    /* Its own key, not the hash key. */
    {
        char hpath[PATH_MAX];
        size_t hlen = 0;

        ck_assert(kg_harness_path(hpath, sizeof(hpath), g_state, "hash.key"));
        ck_assert_int_eq(kg_harness_read_file(hpath, &hash, &hlen), 0);
        ck_assert_uint_eq(hlen, 32);
        ck_assert(memcmp(hash, key1, 32) != 0);
        free(hash);
    }
    /* Run again: kept, byte for byte. */
    ck_assert_int_eq(kg("--json", "init", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert(json_is_false(json_object_get(j, "secretKeyCreated")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "secretKey")),
                     g_secretkey);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "schemaVersion")),
                     KG_STORE_SCHEMA_VERSION);
    json_decref(j);
    ck_assert_int_eq(kg("init", NULL), 0);
    assert_ok();
    assert_out_has("secret.key (kept)");
    ck_assert_int_eq(kg_harness_read_file(g_secretkey, &key2, &len2), 0);
    ck_assert_uint_eq(len2, 32);
    ck_assert_mem_eq(key1, key2, 32);
    free(key1);
    free(key2);
}
END_TEST

/* [security] secret_key_file puts it elsewhere, directories made 0700. */
START_TEST(test_init_secret_key_elsewhere)
{
    char keys[PATH_MAX];
    char path[PATH_MAX];
    char line[2 * PATH_MAX];

    ck_assert(kg_harness_path(keys, sizeof(keys), g_dir, "keys"));
    ck_assert(kg_harness_path(path, sizeof(path), keys, "box.key"));
    snprintf(line, sizeof(line), "secret_key_file = %s\n", path);
    write_config(line);
    ck_assert_int_eq(kg("init", NULL), 0);
    assert_ok();
    ck_assert_int_eq(kg_harness_file_mode(keys), 0700);
    ck_assert_int_eq(kg_harness_file_mode(path), 0600);
    ck_assert(!kg_harness_exists(g_secretkey));
    /* The same file as the hash key is refused. */
    snprintf(line, sizeof(line), "secret_key_file = %s/hash.key\n", g_state);
    write_config(line);
    ck_assert_int_eq(kg("init", NULL), 1);
    assert_fail(1, "secret_key_file");
}
END_TEST

/* A lost secret key is not silently replaced while credentials use it. */
START_TEST(test_init_keeps_sealed_credentials)
{
    char *before;

    ck_assert_int_eq(unlink(g_secretkey), 0);
    before = snapshot();
    ck_assert_int_eq(kg("init", NULL), 1);
    assert_fail(1, "restore it from a backup");
    ck_assert(!kg_harness_exists(g_secretkey));
    assert_snapshot_same(before, "init without the secret key");
    free(before);
    /* Once the credential is gone, init makes a new key. */
    ck_assert_int_eq(kg("workspaces", "credential", "delete", "default",
                        "--provider", "openai", NULL),
                     0);
    assert_ok();
    ck_assert_int_eq(kg("init", NULL), 0);
    assert_ok();
    assert_out_has("secret.key (created)");
    ck_assert_int_eq(kg_harness_file_mode(g_secretkey), 0600);
}
END_TEST

/* ---- set, list, delete -------------------------------------------------- */

START_TEST(test_set_from_env_file_stdin)
{
    static const char *const from_file[] = {
        "workspaces", "credential",  "set", "default", "--provider",
        "anthropic",  "--from-file", NULL,  NULL};
    static const char *const from_stdin[] = {
        "workspaces", "credential", "set",     "default",
        "--provider", "anthropic",  "--stdin", NULL};
    static const char *const replace[] = {
        "--json",     "workspaces", "credential", "set",         "default",
        "--provider", "openai",     "--from-env", "REPLACEMENT", NULL};
    static const char *const env[] = {"REPLACEMENT=" SECRET_D, NULL};
    const char *args[16];
    char file[PATH_MAX];
    json_t *list;
    json_t *j;

    /* From the environment (the fixture): only the last 4 are shown. */
    list = cred_list("default");
    ck_assert_uint_eq(json_array_size(list), 1);
    j = json_array_get(list, 0); /* borrowed */
    ck_assert_str_eq(json_string_value(json_object_get(j, "provider")),
                     "openai");
    ck_assert_str_eq(json_string_value(json_object_get(j, "last4")), "AAAA");
    ck_assert_uint_eq(json_object_size(j), 4);
    json_decref(list);

    /* From a file (mode 0600; one line, its newline is not part of it). */
    ck_assert(kg_harness_path(file, sizeof(file), g_dir, "cred.txt"));
    ck_assert_int_eq(
        kg_harness_write_file(file, SECRET_B "\n", strlen(SECRET_B) + 1, 0600),
        0);
    memcpy(args, from_file, sizeof(from_file));
    args[7] = file;
    ck_assert_int_eq(run(args, NULL, NULL), 0);
    assert_ok();
    assert_out_has("Credential for provider 'anthropic' set on workspace "
                   "'default' (...BBBB).");

    /* From stdin, replacing it. */
    ck_assert_int_eq(run(from_stdin, NULL, SECRET_C "\n"), 0);
    assert_ok();
    assert_out_has("Credential for provider 'anthropic' replaced on "
                   "workspace 'default' (...CCCC).");

    /* From the environment, replacing the fixture's; JSON. */
    ck_assert_int_eq(run(replace, env, NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert(json_is_true(json_object_get(j, "replaced")));
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "credential"), "last4")),
                     "DDDD");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "workspace"), "name")),
                     "default");
    json_decref(j);

    /* The human list: provider, last 4, times; by provider name. */
    ck_assert_int_eq(kg("workspaces", "credential", "list", "default", NULL),
                     0);
    assert_ok();
    assert_out_has("PROVIDER");
    assert_out_has("LAST4");
    assert_out_has("CREATED");
    assert_out_has("UPDATED");
    assert_out_has("anthropic  ...CCCC");
    assert_out_has("openai     ...DDDD");
    ck_assert(strstr(R.out, "anthropic") < strstr(R.out, "openai"));
    /* Another workspace has none. */
    ck_assert_int_eq(kg("workspaces", "create", "team-b", NULL), 0);
    list = cred_list("team-b");
    ck_assert_uint_eq(json_array_size(list), 0);
    json_decref(list);

    /* Nothing of any of them is in the store files or rows; the audit
     * trail has the changes. */
    assert_all_clean();
    {
        char *dump = NULL;

        ck_assert_int_eq(kg_harness_store_dump(g_db, &dump), 0);
        ck_assert_ptr_nonnull(strstr(dump, "credential-set"));
        ck_assert_ptr_nonnull(strstr(dump, "\"last4\":\"DDDD\""));
        free(dump);
    }
}
END_TEST

START_TEST(test_delete)
{
    char *before;
    json_t *list;

    ck_assert_int_eq(kg("workspaces", "credential", "delete", "default",
                        "--provider", "openai", NULL),
                     0);
    assert_ok();
    assert_out_has("Credential for provider 'openai' deleted from workspace "
                   "'default' (...AAAA).");
    list = cred_list("default");
    ck_assert_uint_eq(json_array_size(list), 0);
    json_decref(list);
    {
        char *dump = NULL;

        ck_assert_int_eq(kg_harness_store_dump(g_db, &dump), 0);
        ck_assert_ptr_nonnull(strstr(dump, "credential-delete"));
        free(dump);
    }
    /* Again: nothing to delete, nothing changes. */
    before = snapshot();
    ck_assert_int_eq(kg("workspaces", "credential", "delete", "default",
                        "--provider", "openai", NULL),
                     1);
    assert_fail(1, "has no credential for provider 'openai'");
    assert_snapshot_same(before, "a second delete");
    free(before);
    assert_all_clean();
}
END_TEST

/* Listing and deleting need no secret key; setting needs a sound one. */
START_TEST(test_secret_key_faults)
{
    static const char *const set[] = {"workspaces", "credential",   "set",
                                      "default",    "--provider",   "anthropic",
                                      "--from-env", "KG_TEST_CRED", NULL};
    static const char *const env[] = {"KG_TEST_CRED=" SECRET_B, NULL};
    char *key = NULL;
    size_t len = 0;
    char *before;

    ck_assert_int_eq(kg_harness_read_file(g_secretkey, &key, &len), 0);
    ck_assert_int_eq(chmod(g_secretkey, 0644), 0);
    before = snapshot();
    ck_assert_int_eq(run(set, env, NULL), 1);
    assert_fail(1, "chmod 600");
    assert_snapshot_same(before, "set with a loose secret key");
    free(before);

    ck_assert_int_eq(unlink(g_secretkey), 0);
    before = snapshot();
    ck_assert_int_eq(run(set, env, NULL), 1);
    assert_fail(1, "keygate init");
    assert_snapshot_same(before, "set without the secret key");
    free(before);
    ck_assert_int_eq(kg("workspaces", "credential", "list", "default", NULL),
                     0);
    assert_ok();
    assert_out_has("...AAAA");

    ck_assert_int_eq(kg_harness_write_file(g_secretkey, key, len, 0600), 0);
    ck_assert_int_eq(run(set, env, NULL), 0);
    assert_ok();
    free(key);
}
END_TEST

/* ---- bad input: clear errors, exit codes, nothing changed ---------------- */

typedef struct bad_case {
    int code;
    const char *needle;
    const char *args[CASE_ARGS];
    const char *env; /* one "NAME=value", or NULL */
    const char *in;  /* stdin, or NULL */
} bad_case_t;

#define SET "workspaces", "credential", "set"
#define OAI "--provider", "openai"

static const bad_case_t bad_cases[] = {
    /* unknown provider, workspace */
    {2,
     "unknown provider 'azure'; configured providers: openai, anthropic",
     {SET, "default", "--provider", "azure", "--from-env", "V"},
     "V=" SECRET_BAD,
     NULL},
    {2,
     "not a provider name",
     {SET, "default", "--provider", "Open AI", "--stdin"},
     NULL,
     SECRET_BAD},
    {1, "no workspace 'nope'", {SET, "nope", OAI, "--stdin"}, NULL, SECRET_BAD},
    /* the secret on the command line: impossible, and never echoed */
    {2,
     "never taken from the command line",
     {SET, "default", OAI, "@ARGV"},
     NULL,
     NULL},
    {2,
     "never taken from the command line",
     {SET, "default", OAI, "--stdin", "@ARGV"},
     NULL,
     SECRET_BAD},
    {2,
     "option '--secret'",
     {SET, "default", OAI, "--secret", "@ARGV"},
     NULL,
     NULL},
    {2,
     "option '--secret'",
     {SET, "default", OAI, "--secret=@ARGV"},
     NULL,
     NULL},
    {2, "option '--value'", {SET, "default", OAI, "--value=@ARGV"}, NULL, NULL},
    {2,
     "option '--api-key'",
     {SET, "default", OAI, "--api-key", "@ARGV"},
     NULL,
     NULL},
    {2,
     "not a value",
     {SET, "default", OAI, "--from-env", "@ARGV"},
     NULL,
     NULL},
    {2,
     "no such file",
     {SET, "default", OAI, "--from-file", "@ARGV"},
     NULL,
     NULL},
    /* empty */
    {2, "is empty", {SET, "default", OAI, "--from-env", "V"}, "V=", NULL},
    {2, "is empty", {SET, "default", OAI, "--from-env", "V"}, "V=  ", NULL},
    {2, "is empty", {SET, "default", OAI, "--stdin"}, NULL, ""},
    {2, "is empty", {SET, "default", OAI, "--stdin"}, NULL, "\n"},
    {2, "is empty", {SET, "default", OAI, "--from-file", "@EMPTY"}, NULL, NULL},
    /* line breaks, spaces, control characters, length */
    {2,
     "one line",
     {SET, "default", OAI, "--from-env", "V"},
     "V=sk-first-line\nsk-second-line",
     NULL},
    {2,
     "one line",
     {SET, "default", OAI, "--stdin"},
     NULL,
     "sk-first-line\nsk-second-line\n"},
    {2,
     "one line",
     {SET, "default", OAI, "--stdin"},
     NULL,
     "sk-abc\r\nX-Injected: 1"},
    {2,
     "one line",
     {SET, "default", OAI, "--from-file", "@TWOLINES"},
     NULL,
     NULL},
    {2, "without spaces", {SET, "default", OAI, "--stdin"}, NULL, "sk abc"},
    {2, "without spaces", {SET, "default", OAI, "--stdin"}, NULL, "sk\tabc"},
    {2, "longer than 4096", {SET, "default", OAI, "--stdin"}, NULL, "@BIG"},
    /* sources */
    {2, "exactly one of", {SET, "default", OAI}, NULL, NULL},
    {2,
     "exactly one of",
     {SET, "default", OAI, "--stdin", "--from-env", "V"},
     NULL,
     NULL},
    {2, "expected --provider", {SET, "default", "--stdin"}, NULL, SECRET_BAD},
    {2,
     "not set",
     {SET, "default", OAI, "--from-env", "KG_UNSET_VAR"},
     NULL,
     NULL},
    {2,
     "accessible by others",
     {SET, "default", OAI, "--from-file", "@LOOSE"},
     NULL,
     NULL},
    {2, "option '--from-env'", {SET, "default", OAI, "--from-env"}, NULL, NULL},
    {2,
     "option '--provider'",
     {SET, "default", "--stdin", "--provider"},
     NULL,
     NULL},
    /* list and delete */
    {1,
     "no workspace 'nope'",
     {"workspaces", "credential", "list", "nope"},
     NULL,
     NULL},
    {2,
     "expected exactly one workspace",
     {"workspaces", "credential", "list", "default", "extra"},
     NULL,
     NULL},
    {2,
     "expected exactly one workspace",
     {"workspaces", "credential", "list", "--bogus"},
     NULL,
     NULL},
    {2,
     "unknown provider 'azure'",
     {"workspaces", "credential", "delete", "default", "--provider", "azure"},
     NULL,
     NULL},
    {1,
     "has no credential for provider 'anthropic'",
     {"workspaces", "credential", "delete", "default", "--provider",
      "anthropic"},
     NULL,
     NULL},
    {1,
     "no workspace 'nope'",
     {"workspaces", "credential", "delete", "nope", OAI},
     NULL,
     NULL},
    {2,
     "--provider NAME",
     {"workspaces", "credential", "delete", "default"},
     NULL,
     NULL},
    {2,
     "unknown command",
     {"workspaces", "credential", "show", "default"},
     NULL,
     NULL},
};

#define N_BAD_CASES ((int)(sizeof(bad_cases) / sizeof(*bad_cases)))

/* The files the cases name: @EMPTY, @TWOLINES, @LOOSE. */
static const char *case_file(const char *token, char *buf, size_t len)
{
    static const struct {
        const char *token;
        const char *content;
        mode_t mode;
    } files[] = {
        {"@EMPTY", "\n \n", 0600},
        {"@TWOLINES", SECRET_BAD "\n" SECRET_BAD "\n", 0600},
        {"@LOOSE", SECRET_BAD "\n", 0644},
    };

    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        if (strcmp(token, files[i].token) == 0) {
            ck_assert(kg_harness_path(buf, len, g_dir, token + 1));
            ck_assert_int_eq(kg_harness_write_file(buf, files[i].content,
                                                   strlen(files[i].content),
                                                   files[i].mode),
                             0);
            return buf;
        }
    }
    return NULL;
}

START_TEST(test_bad_input)
{
    const bad_case_t *c = &bad_cases[_i];
    const char *args[CASE_ARGS + 1];
    const char *env[2] = {c->env, NULL};
    char files[CASE_ARGS][PATH_MAX];
    char argv_opt[128];
    char what[256] = "";
    char *big = NULL;
    const char *in = c->in;
    char *before;
    size_t n = 0;

    for (size_t i = 0; i < CASE_ARGS && c->args[i] != NULL; i++) {
        const char *a = c->args[i];
        size_t w = strlen(what);

        snprintf(what + w, sizeof(what) - w, " %s", a);
        if (strcmp(a, "@ARGV") == 0) {
            a = SECRET_ARGV;
        } else if (strcmp(a, "--secret=@ARGV") == 0 ||
                   strcmp(a, "--value=@ARGV") == 0) {
            snprintf(argv_opt, sizeof(argv_opt), "%.*s%s",
                     (int)(strchr(a, '=') - a + 1), a, SECRET_ARGV);
            a = argv_opt;
        } else if (a[0] == '@') {
            a = case_file(a, files[i], sizeof(files[i]));
            ck_assert_ptr_nonnull(a);
        }
        args[n++] = a;
    }
    args[n] = NULL;
    if (in != NULL && strcmp(in, "@BIG") == 0) {
        big = malloc(5001);
        ck_assert_ptr_nonnull(big);
        memset(big, 'k', 5000);
        big[5000] = '\0';
        in = big;
    }
    before = snapshot();
    run(args, c->env ? env : NULL, in);
    ck_assert_msg(R.status == c->code, "keygate%s: exit %d, expected %d: %s",
                  what, R.status, c->code, R.err);
    assert_fail(c->code, c->needle);
    assert_snapshot_same(before, what);
    free(before);
    free(big);
}
END_TEST

/* ---- help --------------------------------------------------------------- */

START_TEST(test_help)
{
    static const char *const cases[][5] = {
        {"workspaces", "credential", "--help"},
        {"workspaces", "credential", "set", "--help"},
        {"workspaces", "credential", "list", "--help"},
        {"workspaces", "credential", "delete", "--help"},
    };

    /* Help needs no configuration, nor a store. */
    write_config(NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        ck_assert_int_eq(run(cases[i], NULL, NULL), 0);
        assert_ok();
        ck_assert_msg(strncmp(R.out, "Usage: keygate", 14) == 0, "%s", R.out);
    }
    ck_assert_int_eq(kg("workspaces", "--help", NULL), 0);
    assert_out_has("credential");
    ck_assert_int_eq(kg("workspaces", "credential", "--help", NULL), 0);
    assert_out_has("set");
    assert_out_has("list");
    assert_out_has("delete");
    ck_assert_int_eq(kg("workspaces", "credential", "set", "--help", NULL), 0);
    assert_out_has("--from-env VAR | --from-file PATH | --stdin");
    ck_assert(!kg_harness_exists(g_state));
}
END_TEST

/* ---- the suite ------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);

    tcase_add_unchecked_fixture(tc, setup_root, teardown_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *cli_wscred_suite(void)
{
    Suite *s = suite_create("cli_wscred");
    TCase *tc;

    tc = tcase(s, "init", setup_dir);
    tcase_add_test(tc, test_init_creates_the_secret_key);
    tcase_add_test(tc, test_init_secret_key_elsewhere);
    tcase_add_test(tc, test_help);

    tc = tcase(s, "credentials", setup_store);
    tcase_add_test(tc, test_init_keeps_sealed_credentials);
    tcase_add_test(tc, test_set_from_env_file_stdin);
    tcase_add_test(tc, test_delete);
    tcase_add_test(tc, test_secret_key_faults);
    tcase_add_loop_test(tc, test_bad_input, 0, N_BAD_CASES);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_wscred_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

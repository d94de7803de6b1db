/* Admin API: keys — list, create (token once), read, change, lifecycle. */
#include "admin_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/clock.h"
#include "keygate/duration.h"
#include "keygate/money.h"
#include "keygate/period.h"
#include "keygate/timefmt.h"

/* Keys per page: the default and the most a caller may ask for. */
#define ADMIN_KEYS_PAGE_DEFAULT 100
#define ADMIN_KEYS_PAGE_MAX     500
/* A keys cursor: base64url of "<created_at>.<id>". */
#define ADMIN_KEYS_CURSOR_RAW 48
#define ADMIN_KEYS_CURSOR_MAX 72

/* Strings a spec points into, owned while it is used. */
typedef struct admin_spec_own {
    char *metadata;
    char *rules;
} admin_spec_own_t;

static void admin_spec_own_free(admin_spec_own_t *o)
{
    free(o->metadata);
    free(o->rules);
    memset(o, 0, sizeof(*o));
}

/* A bad field: answer 400 naming it and return false. */
static bool admin_bad(admin_ctx_t *c, const char *field, const char *why)
{
    char msg[KG_DIAG_MAX + 80];

    snprintf(msg, sizeof(msg), "%.64s: %s", field, why);
    admin_reply_error(c, KG_ERR_INVAL, msg, field);
    return false;
}

/* A money field: a decimal string, or null when allow_null (KG_NONE). */
static bool admin_money_field(admin_ctx_t *c, const char *field, json_t *v,
                              int64_t *out)
{
    kg_diag_t diag = {{0}};

    if (json_is_null(v)) {
        *out = KG_NONE;
        return true;
    }
    if (!json_is_string(v)) {
        return admin_bad(c, field,
                         "a decimal USD amount as a string, like \"25.00\", "
                         "or null for no limit");
    }
    if (kg_money_parse(json_string_value(v), out, &diag) != KG_OK) {
        return admin_bad(c, field, diag.msg);
    }
    return true;
}

/* A count field: a whole number, or null (KG_NONE). */
static bool admin_count_field(admin_ctx_t *c, const char *field, json_t *v,
                              int64_t *out)
{
    if (json_is_null(v)) {
        *out = KG_NONE;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > KG_RATE_MAX) {
        return admin_bad(c, field, "a whole number from 0, or null for none");
    }
    *out = json_integer_value(v);
    return true;
}

static bool admin_string_field(admin_ctx_t *c, const char *field, json_t *v,
                               const char **out)
{
    if (!json_is_string(v)) {
        return admin_bad(c, field, "a string");
    }
    *out = json_string_value(v);
    return true;
}

/* A JSON object field, kept as its text in *own. */
static bool admin_object_field(admin_ctx_t *c, const char *field, json_t *v,
                               char **own, const char **out)
{
    if (!json_is_object(v)) {
        return admin_bad(c, field, "a JSON object");
    }
    free(*own);
    *own = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (*own == NULL) {
        return admin_bad(c, field, "cannot be read");
    }
    *out = *own;
    return true;
}

/* expiresAt (RFC 3339 or null) or ttl (a duration from now). */
static bool admin_expiry_field(admin_ctx_t *c, const char *field, json_t *v,
                               kg_key_spec_t *spec)
{
    kg_diag_t diag = {{0}};
    int64_t t = 0;

    if (spec->set_expires) {
        return admin_bad(c, field, "give one of expiresAt and ttl");
    }
    spec->set_expires = true;
    if (json_is_null(v)) {
        spec->expires_at = KG_NONE;
        return true;
    }
    if (!json_is_string(v)) {
        return admin_bad(c, field,
                         strcmp(field, "ttl") == 0
                             ? "a duration like \"30d\", or null: never"
                             : "an RFC 3339 time, or null: never");
    }
    if (strcmp(field, "ttl") == 0) {
        if (kg_duration_parse(json_string_value(v), &t, &diag) != KG_OK) {
            return admin_bad(c, field, diag.msg);
        }
        if (t <= 0) {
            return admin_bad(c, field, "must be longer than 0s");
        }
        spec->expires_at = kg_clock_now() + t;
        return true;
    }
    if (kg_time_parse(json_string_value(v), &t, &diag) != KG_OK) {
        return admin_bad(c, field, diag.msg);
    }
    spec->expires_at = t;
    return true;
}

/* period and periodLimit go together; null removes the period limit. */
static bool admin_period_fields(admin_ctx_t *c, json_t *period, json_t *limit,
                                kg_key_spec_t *spec)
{
    if (period == NULL && limit == NULL) {
        return true;
    }
    spec->set_period_limit = true;
    if (json_is_null(limit) || json_is_null(period)) {
        if (!(period == NULL || json_is_null(period)) ||
            !(limit == NULL || json_is_null(limit))) {
            return admin_bad(c, "periodLimit",
                             "set period and periodLimit together, or null "
                             "to remove the period limit");
        }
        spec->period = KG_PERIOD_NONE;
        spec->period_limit = KG_NONE;
        return true;
    }
    if (period == NULL || limit == NULL) {
        return admin_bad(c, period == NULL ? "period" : "periodLimit",
                         "set period and periodLimit together");
    }
    if (!json_is_string(period) ||
        !kg_period_parse(json_string_value(period), &spec->period) ||
        spec->period == KG_PERIOD_NONE) {
        return admin_bad(c, "period", "one of hour, day, week, month");
    }
    return admin_money_field(c, "periodLimit", limit, &spec->period_limit);
}

/* One field of a key's JSON; false when it was bad (answered). */
static bool admin_key_field(admin_ctx_t *c, const char *name, json_t *v,
                            bool create, kg_key_spec_t *spec,
                            admin_spec_own_t *own)
{
    if (strcmp(name, "name") == 0) {
        return admin_string_field(c, name, v, &spec->name);
    }
    if (strcmp(name, "description") == 0) {
        return admin_string_field(c, name, v, &spec->description);
    }
    if (strcmp(name, "workspace") == 0 && create) {
        return admin_string_field(c, name, v, &spec->workspace);
    }
    if (strcmp(name, "metadata") == 0) {
        return admin_object_field(c, name, v, &own->metadata, &spec->metadata);
    }
    if (strcmp(name, "rules") == 0) {
        return admin_object_field(c, name, v, &own->rules, &spec->rules);
    }
    if (strcmp(name, "expiresAt") == 0 || strcmp(name, "ttl") == 0) {
        return admin_expiry_field(c, name, v, spec);
    }
    if (strcmp(name, "usageLimit") == 0) {
        spec->set_usage_limit = true;
        return admin_money_field(c, name, v, &spec->usage_limit);
    }
    if (strcmp(name, "rpm") == 0) {
        spec->set_rpm = true;
        return admin_count_field(c, name, v, &spec->rpm);
    }
    if (strcmp(name, "tpm") == 0) {
        spec->set_tpm = true;
        return admin_count_field(c, name, v, &spec->tpm);
    }
    if (strcmp(name, "maxConcurrent") == 0) {
        spec->set_max_concurrent = true;
        return admin_count_field(c, name, v, &spec->max_concurrent);
    }
    if (strcmp(name, "period") == 0 || strcmp(name, "periodLimit") == 0) {
        return true; /* taken together below */
    }
    return admin_bad(c, name,
                     create ? "not a field of a new key"
                            : "not a field that can be changed");
}

/*
 * The body as a key spec: every field checked, unknown ones refused.
 * false when it was bad (answered).
 */
static bool admin_key_spec(admin_ctx_t *c, bool create, kg_key_spec_t *spec,
                           admin_spec_own_t *own)
{
    const char *name;
    json_t *v; /* borrowed */

    memset(spec, 0, sizeof(*spec));
    memset(own, 0, sizeof(*own));
    json_object_foreach(c->body, name, v)
    {
        if (!admin_key_field(c, name, v, create, spec, own)) {
            return false;
        }
    }
    return admin_period_fields(c, json_object_get(c->body, "period"),
                               json_object_get(c->body, "periodLimit"), spec);
}

/* The field a keys library error is about, from how its text begins. */
static const char *admin_key_param(const kg_diag_t *diag)
{
    static const struct {
        const char *prefix;
        const char *field;
    } map[] = {
        {"key name", "name"},
        {"name", "name"},
        {"description", "description"},
        {"metadata", "metadata"},
        {"rule", "rules"},
        {"unknown rule", "rules"},
        {"expiry", "expiresAt"},
        {"a key cannot be made to never expire", "expiresAt"},
        {"usage limit", "usageLimit"},
        {"period", "periodLimit"},
        {"rpm", "rpm"},
        {"tpm", "tpm"},
        {"max concurrent", "maxConcurrent"},
        {"no workspace", "workspace"},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++) {
        if (strncmp(diag->msg, map[i].prefix, strlen(map[i].prefix)) == 0) {
            return map[i].field;
        }
    }
    return NULL;
}

static void admin_key_answer(admin_ctx_t *c, unsigned status, const kg_key_t *k)
{
    admin_reply_json(c, status, kg_key_to_json_budget(k, kg_clock_now()));
}

/* ---- cursor ------------------------------------------------------------ */

static void admin_keys_cursor(const kg_key_t *k, char *out, size_t len)
{
    char raw[ADMIN_KEYS_CURSOR_RAW];
    int n = snprintf(raw, sizeof(raw), "%" PRId64 ".%s", k->created_at, k->id);

    sodium_bin2base64(out, len, (const unsigned char *)raw, (size_t)n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static bool admin_keys_cursor_parse(const char *s, int64_t *created,
                                    char id[KG_TOKEN_ID_LEN + 1])
{
    unsigned char raw[ADMIN_KEYS_CURSOR_RAW];
    size_t n = 0;
    char text[ADMIN_KEYS_CURSOR_RAW + 1];
    char *dot;
    char *end = NULL;

    if (strlen(s) > ADMIN_KEYS_CURSOR_MAX ||
        sodium_base642bin(raw, sizeof(raw) - 1, s, strlen(s), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        return false;
    }
    memcpy(text, raw, n);
    text[n] = '\0';
    dot = strchr(text, '.');
    if (dot == NULL || !kg_token_id_valid(dot + 1)) {
        return false;
    }
    *dot = '\0';
    errno = 0;
    *created = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || *created < 0) {
        return false;
    }
    memcpy(id, dot + 1, KG_TOKEN_ID_LEN + 1);
    return true;
}

/* ---- handlers ---------------------------------------------------------- */

/* Parse the list's query arguments into f; false when bad (answered). */
static bool admin_keys_filter(admin_ctx_t *c, kg_key_filter_t *f,
                              char after_id[KG_TOKEN_ID_LEN + 1])
{
    const char *status = admin_arg(c, "status");
    const char *limit = admin_arg(c, "limit");
    const char *cursor = admin_arg(c, "cursor");

    memset(f, 0, sizeof(*f));
    f->workspace = admin_arg(c, "workspace");
    f->name_contains = admin_arg(c, "q");
    f->newest_first = true;
    f->limit = ADMIN_KEYS_PAGE_DEFAULT;
    if (status != NULL && strcmp(status, "all") == 0) {
        f->include_deleted = true;
    } else if (status != NULL && !kg_key_status_parse(status, &f->status)) {
        return admin_bad(c, "status", "one of active, inactive, deleted, all");
    } else if (status != NULL) {
        f->status_is_set = true;
    }
    if (limit != NULL) {
        char *end = NULL;
        long v = strtol(limit, &end, 10);

        if (end == limit || *end != '\0' || v < 1 || v > ADMIN_KEYS_PAGE_MAX) {
            return admin_bad(c, "limit", "a whole number from 1 to 500");
        }
        f->limit = (size_t)v;
    }
    if (cursor != NULL) {
        if (!admin_keys_cursor_parse(cursor, &f->after_created, after_id)) {
            return admin_bad(c, "cursor", "not a cursor this API gave");
        }
        f->after_id = after_id;
    }
    return true;
}

void admin_h_keys_list(admin_ctx_t *c)
{
    kg_keys_ctx_t ctx;
    kg_key_filter_t f;
    char after_id[KG_TOKEN_ID_LEN + 1];
    char next[ADMIN_KEYS_CURSOR_MAX + 1];
    kg_key_t *list = NULL;
    size_t n = 0;
    kg_diag_t diag = {{0}};
    json_t *data;
    int64_t now = kg_clock_now();
    kg_err_t rc;

    if (!admin_keys_filter(c, &f, after_id)) {
        return;
    }
    admin_keys_ctx(c, &ctx);
    f.limit++; /* one more tells whether there is a next page */
    rc = kg_keys_list(&ctx, &f, &list, &n, &diag);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag,
                         rc == KG_ERR_NOT_FOUND ? "workspace" : NULL);
        return;
    }
    data = json_array();
    for (size_t i = 0; i < n && i < f.limit - 1; i++) {
        json_array_append_new(data, kg_key_to_json_budget(&list[i], now));
    }
    next[0] = '\0';
    if (n == f.limit) {
        admin_keys_cursor(&list[f.limit - 2], next, sizeof(next));
    }
    admin_reply_json(c, MHD_HTTP_OK,
                     json_pack("{s:s, s:o, s:o}", "object", "list", "data",
                               data, "nextCursor",
                               next[0] ? json_string(next) : json_null()));
    kg_keys_list_free(&list, n);
}

void admin_h_keys_create(admin_ctx_t *c)
{
    kg_keys_ctx_t ctx;
    kg_key_spec_t spec;
    admin_spec_own_t own;
    kg_key_t k;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    memset(&k, 0, sizeof(k));
    if (!admin_need_body(c)) {
        return;
    }
    if (!admin_key_spec(c, true, &spec, &own)) {
        admin_spec_own_free(&own);
        return;
    }
    if (spec.name == NULL) {
        admin_spec_own_free(&own);
        admin_bad(c, "name", "a key needs a name");
        return;
    }
    admin_keys_ctx(c, &ctx);
    rc = kg_keys_create(&ctx, &spec, &k, token, &diag);
    admin_spec_own_free(&own);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag,
                         rc == KG_ERR_NOT_FOUND ? "workspace"
                                                : admin_key_param(&diag));
        return;
    }
    admin_changed(c);
    admin_reply_json(c, MHD_HTTP_CREATED,
                     json_pack("{s:s, s:o}", "token", token, "key",
                               kg_key_to_json_budget(&k, kg_clock_now())));
    sodium_memzero(token, sizeof(token));
    kg_key_clear(&k);
}

void admin_h_key_get(admin_ctx_t *c)
{
    kg_keys_ctx_t ctx;
    kg_key_t k;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    admin_keys_ctx(c, &ctx);
    rc = kg_keys_get(&ctx, c->params[0], &k, &diag);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return;
    }
    admin_key_answer(c, MHD_HTTP_OK, &k);
    kg_key_clear(&k);
}

void admin_h_key_update(admin_ctx_t *c)
{
    kg_keys_ctx_t ctx;
    kg_key_spec_t spec;
    admin_spec_own_t own;
    kg_key_t k;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    memset(&k, 0, sizeof(k));
    if (!admin_need_body(c)) {
        return;
    }
    if (!admin_key_spec(c, false, &spec, &own)) {
        admin_spec_own_free(&own);
        return;
    }
    admin_keys_ctx(c, &ctx);
    rc = kg_keys_update(&ctx, c->params[0], &spec, &k, &diag);
    admin_spec_own_free(&own);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, admin_key_param(&diag));
        return;
    }
    admin_changed(c);
    admin_key_answer(c, MHD_HTTP_OK, &k);
    kg_key_clear(&k);
}

void admin_h_key_delete(admin_ctx_t *c)
{
    kg_keys_ctx_t ctx;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    admin_keys_ctx(c, &ctx);
    rc = kg_keys_delete(&ctx, c->params[0], &diag);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return;
    }
    admin_changed(c);
    admin_reply_empty(c);
}

typedef kg_err_t (*admin_key_op_fn)(const kg_keys_ctx_t *ctx, const char *ref,
                                    kg_key_t *out, kg_diag_t *diag);

/* disable, enable, revoke: no body, the key after the change. */
static void admin_key_transition(admin_ctx_t *c, admin_key_op_fn op)
{
    kg_keys_ctx_t ctx;
    kg_key_t k;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    if (c->body != NULL && json_object_size(c->body) > 0) {
        admin_bad(c, json_object_iter_key(json_object_iter(c->body)),
                  "this action takes no fields");
        return;
    }
    admin_keys_ctx(c, &ctx);
    rc = op(&ctx, c->params[0], &k, &diag);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return;
    }
    admin_changed(c);
    admin_key_answer(c, MHD_HTTP_OK, &k);
    kg_key_clear(&k);
}

void admin_h_key_disable(admin_ctx_t *c)
{
    admin_key_transition(c, kg_keys_disable);
}

void admin_h_key_enable(admin_ctx_t *c)
{
    admin_key_transition(c, kg_keys_enable);
}

/* Revoking a revoked key changes nothing and says so: 409. */
static kg_err_t admin_revoke_once(const kg_keys_ctx_t *ctx, const char *ref,
                                  kg_key_t *out, kg_diag_t *diag)
{
    bool already = false;
    kg_err_t rc = kg_keys_revoke(ctx, ref, out, &already, diag);

    if (rc == KG_OK && already) {
        kg_key_clear(out);
        rc =
            kg_diag_fail(diag, KG_ERR_STATE, "key %s was already revoked", ref);
    }
    return rc;
}

void admin_h_key_revoke(admin_ctx_t *c)
{
    admin_key_transition(c, admin_revoke_once);
}

void admin_h_key_rotate(admin_ctx_t *c)
{
    kg_keys_ctx_t ctx;
    kg_key_t k;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};
    int64_t grace = 0;
    const char *name;
    json_t *v; /* borrowed */
    kg_err_t rc;

    if (c->body != NULL) {
        json_object_foreach(c->body, name, v)
        {
            if (strcmp(name, "grace") != 0) {
                admin_bad(c, name, "rotate takes only grace");
                return;
            }
            if (!json_is_string(v) ||
                kg_duration_parse(json_string_value(v), &grace, &diag) !=
                    KG_OK ||
                grace < 0) {
                admin_bad(c, "grace",
                          "a duration like \"1h\" (\"0s\": the old secret "
                          "stops now)");
                return;
            }
        }
    }
    admin_keys_ctx(c, &ctx);
    rc = kg_keys_rotate(&ctx, c->params[0], grace, &k, token, &diag);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, rc == KG_ERR_INVAL ? "grace" : NULL);
        return;
    }
    admin_changed(c);
    admin_reply_json(c, MHD_HTTP_OK,
                     json_pack("{s:s, s:o}", "token", token, "key",
                               kg_key_to_json_budget(&k, kg_clock_now())));
    sodium_memzero(token, sizeof(token));
    kg_key_clear(&k);
}

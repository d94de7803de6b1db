/* Unit tests of the INI configuration: parsing, errors, JSON view, docs. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/config.h"
#include "keygate/duration.h"
#include "unit_util.h"

#ifndef KEYGATE_SOURCE_DIR
#error "KEYGATE_SOURCE_DIR must name the source tree (see CMakeLists.txt)"
#endif

/* Write text to <dir>/keygate.ini and load it; path gets the file name. */
static kg_err_t ut_load_text(const char *dir, const char *text, char *path,
                             kg_config_t **cfg, kg_diag_t *diag)
{
    ut_join(path, dir, "keygate.ini");
    ut_write_text(path, text);
    return kg_config_load(path, cfg, diag);
}

START_TEST(test_defaults)
{
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_config_load(NULL, &cfg, &diag), KG_OK);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_null(cfg->path);
    ck_assert_str_eq(cfg->store_path, "/var/lib/keygate/keygate.db");
    ck_assert_int_eq(cfg->store_busy_timeout_ms, 5000);
    ck_assert_str_eq(cfg->keys_prefix, "kg");
    ck_assert_int_eq(cfg->keys_max_ttl, 90 * 86400);
    ck_assert_int_eq(cfg->keys_default_ttl, 90 * 86400);
    ck_assert_str_eq(cfg->hash_key_file, "/var/lib/keygate/hash.key");
    ck_assert_int_eq(cfg->log_level, KG_LOG_INFO);
    kg_config_free(&cfg);
    ck_assert_ptr_null(cfg);
    kg_config_free(&cfg); /* twice is harmless */
}
END_TEST

START_TEST(test_every_setting)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ck_assert_msg(ut_load_text(dir,
                               "; keygate test configuration\n"
                               "# another comment\n"
                               "\n"
                               "[store]\n"
                               "path = /srv/kg/store.db\n"
                               "busy_timeout = 10s ; inline comment\n"
                               "[keys]\n"
                               "prefix = acme2\n"
                               "max_ttl = 30d\n"
                               "default_ttl = 1w\n"
                               "[security]\n"
                               "hash_key_file = /srv/kg/hash.key\n"
                               "[log]\n"
                               "level = debug\n",
                               path, &cfg, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_str_eq(cfg->path, path);
    ck_assert_str_eq(cfg->store_path, "/srv/kg/store.db");
    ck_assert_int_eq(cfg->store_busy_timeout_ms, 10000);
    ck_assert_str_eq(cfg->keys_prefix, "acme2");
    ck_assert_int_eq(cfg->keys_max_ttl, 30 * 86400);
    ck_assert_int_eq(cfg->keys_default_ttl, 7 * 86400);
    ck_assert_str_eq(cfg->hash_key_file, "/srv/kg/hash.key");
    ck_assert_int_eq(cfg->log_level, KG_LOG_DEBUG);
    kg_config_free(&cfg);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_relative_paths)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char want[UT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ck_assert_msg(ut_load_text(dir,
                               "[store]\n"
                               "path = data/kg.db\n"
                               "[security]\n"
                               "hash_key_file = hash.key\n",
                               path, &cfg, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_str_eq(cfg->store_path, ut_join(want, dir, "data/kg.db"));
    ck_assert_str_eq(cfg->hash_key_file, ut_join(want, dir, "hash.key"));
    /* The prefix is not a path: never resolved. */
    ck_assert_str_eq(cfg->keys_prefix, "kg");
    kg_config_free(&cfg);
    ut_tmpdir_remove(dir);
}
END_TEST

typedef struct ut_good_row {
    const char *what;
    const char *text;
    int64_t max_ttl;
    int64_t default_ttl;
} ut_good_row_t;

static const ut_good_row_t ut_good_rows[] = {
    {"empty file", "", 90 * 86400, 90 * 86400},
    {"only comments", "; a\n# b\n", 90 * 86400, 90 * 86400},
    {"no maximum, no default", "[keys]\nmax_ttl = 0\ndefault_ttl = 0\n", 0, 0},
    {"no maximum, a default", "[keys]\nmax_ttl = 0\ndefault_ttl = 1d\n", 0,
     86400},
    {"default equal to maximum", "[keys]\nmax_ttl = 1h\ndefault_ttl = 60m\n",
     3600, 3600},
    {"a section twice",
     "[keys]\nmax_ttl = 2d\n[log]\nlevel = warn\n"
     "[keys]\ndefault_ttl = 1d\n",
     2 * 86400, 86400},
    {"spaces around", "  [keys]  \n  max_ttl   =   5d  \ndefault_ttl=1d\n",
     5 * 86400, 86400},
    {"CRLF lines", "[keys]\r\nmax_ttl = 5d\r\ndefault_ttl = 1d\r\n", 5 * 86400,
     86400},
    {"UTF-8 BOM", "\xef\xbb\xbf[keys]\nmax_ttl = 5d\ndefault_ttl = 1d\n",
     5 * 86400, 86400},
};

START_TEST(test_good_files)
{
    const ut_good_row_t *row = &ut_good_rows[_i];
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    ut_tmpdir(dir);
    rc = ut_load_text(dir, row->text, path, &cfg, &diag);
    ck_assert_msg(rc == KG_OK, "%s: %s", row->what, diag.msg);
    ck_assert_int_eq(cfg->keys_max_ttl, row->max_ttl);
    ck_assert_int_eq(cfg->keys_default_ttl, row->default_ttl);
    kg_config_free(&cfg);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_line_of_199_ok)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char text[256];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};

    /* A 199-character comment line is the longest allowed. */
    memset(text, 'x', sizeof(text));
    text[0] = ';';
    text[KG_CONFIG_MAX_LINE] = '\n';
    memcpy(text + KG_CONFIG_MAX_LINE + 1, "[log]\nlevel = warn\n", 20);
    ut_tmpdir(dir);
    ck_assert_msg(ut_load_text(dir, text, path, &cfg, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(cfg->log_level, KG_LOG_WARN);
    kg_config_free(&cfg);
    ut_tmpdir_remove(dir);
}
END_TEST

typedef struct ut_bad_row {
    const char *what;
    const char *text;
    int line;         /* 0: the error has no line */
    const char *has1; /* the setting (or section) it names */
    const char *has2; /* what is wrong, may be NULL */
} ut_bad_row_t;

/* Lines of 200 characters: one too many. */
#define UT_X40          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define UT_X160         UT_X40 UT_X40 UT_X40 UT_X40
#define UT_LONG_COMMENT "; " UT_X160 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define UT_LONG_SETTING "path = /" UT_X160 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
_Static_assert(sizeof(UT_LONG_COMMENT) - 1 == KG_CONFIG_MAX_LINE + 1,
               "a comment one character too long");
_Static_assert(sizeof(UT_LONG_SETTING) - 1 == KG_CONFIG_MAX_LINE + 1,
               "a setting one character too long");

/* Stands for "not NULL" before a call that must reset the pointer. */
static char ut_sentinel[1];

static const ut_bad_row_t ut_bad_rows[] = {
    {"unknown section", "[store]\npath = /x\n[bogus]\nx = 1\n", 4, "[bogus]",
     "unknown section"},
    {"unknown setting", "[keys]\nbogus = 1\n", 2, "[keys] bogus",
     "unknown setting"},
    {"setting outside a section", "; top\nprefix = kg\n", 2, "prefix",
     "outside"},
    {"set twice", "[keys]\nprefix = ab\nmax_ttl = 30d\nprefix = cd\n", 4,
     "[keys] prefix", "more than once"},
    {"set twice in a repeated section",
     "[keys]\nprefix = ab\n[log]\nlevel = info\n[keys]\nprefix = cd\n", 6,
     "[keys] prefix", "more than once"},
    {"bad duration", "[keys]\nmax_ttl = 3x\n", 2, "[keys] max_ttl", "'3x'"},
    {"store url not postgresql", "[store]\nurl = mysql://db/keygate\n", 2,
     "[store] url", "postgresql://"},
    {"negative duration", "[keys]\ndefault_ttl = -1d\n", 2,
     "[keys] default_ttl", "'-1d'"},
    {"duration over 100 years", "[keys]\nmax_ttl = 36501d\n", 2,
     "[keys] max_ttl", "100 years"},
    {"bad prefix", "[keys]\nprefix = Bad\n", 2, "[keys] prefix", "'Bad'"},
    {"prefix too long", "[keys]\nprefix = abcdefghij0123456\n", 2,
     "[keys] prefix", "not a valid key prefix"},
    {"kgadm prefix", "[keys]\nprefix = kgadm\n", 2, "[keys] prefix", "kgadm"},
    {"line over 199 characters", "[log]\nlevel = info\n" UT_LONG_COMMENT "\n",
     3, "longer than 199", NULL},
    {"setting line over 199 characters", "[store]\n" UT_LONG_SETTING "\n", 2,
     "longer than 199", NULL},
    {"default_ttl > max_ttl", "[keys]\nmax_ttl = 7d\ndefault_ttl = 30d\n", 0,
     "default_ttl", "max_ttl (7d)"},
    {"default_ttl 0 with max_ttl", "[keys]\ndefault_ttl = 0\n", 0,
     "default_ttl", "max_ttl (90d)"},
    {"busy_timeout out of range", "[store]\nbusy_timeout = 601s\n", 2,
     "[store] busy_timeout", "'601s'"},
    {"bad log level", "[log]\nlevel = loud\n", 2, "[log] level", "'loud'"},
    {"empty path", "[store]\npath =\n", 2, "[store] path", "empty"},
    {"not a setting", "[keys]\nthis is not a setting\n", 2, "syntax", NULL},
    {"unterminated section", "[keys\n", 1, "syntax", NULL},
    {"syntax error then a good line", "[keys]\ngarbage\nprefix = ab\n", 2,
     "syntax", NULL},
    /* The syntax error's line goes with its own message, not a later one. */
    {"syntax error then a bad line", "[keys\nprefix = ab\n", 1, "syntax", NULL},
    {"garbage then unknown setting", "[keys]\ngarbage\nbogus = 1\n", 2,
     "syntax", NULL},
    {"first error wins", "[keys]\nprefix = Bad\nmax_ttl = 3x\n", 2,
     "[keys] prefix", NULL},
};

START_TEST(test_bad_files)
{
    const ut_bad_row_t *row = &ut_bad_rows[_i];
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char where[UT_PATH_MAX + 16];
    kg_config_t *cfg = (kg_config_t *)(void *)ut_sentinel;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    ut_tmpdir(dir);
    rc = ut_load_text(dir, row->text, path, &cfg, &diag);
    ck_assert_msg(rc == KG_ERR_CONFIG, "%s: accepted", row->what);
    ck_assert_ptr_null(cfg);
    if (row->line > 0) {
        snprintf(where, sizeof(where), "%s:%d: ", path, row->line);
    } else {
        snprintf(where, sizeof(where), "%s: ", path);
    }
    ck_assert_msg(strncmp(diag.msg, where, strlen(where)) == 0,
                  "%s: '%s' does not start with '%s'", row->what, diag.msg,
                  where);
    ck_assert_msg(strstr(diag.msg, row->has1) != NULL, "%s: '%s' lacks '%s'",
                  row->what, diag.msg, row->has1);
    ck_assert_msg(row->has2 == NULL || strstr(diag.msg, row->has2) != NULL,
                  "%s: '%s' lacks '%s'", row->what, diag.msg, row->has2);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_missing_file)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "absent.ini");
    ck_assert_int_eq(kg_config_load(path, &cfg, &diag), KG_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(strstr(diag.msg, path));
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_pick_path)
{
    int explicit_path = -1;

    unsetenv("KEYGATE_CONFIG");
    ck_assert_str_eq(kg_config_pick_path("/x/given.ini", &explicit_path),
                     "/x/given.ini");
    ck_assert_int_eq(explicit_path, 1);
    ck_assert_str_eq(kg_config_pick_path(NULL, &explicit_path),
                     KG_CONFIG_DEFAULT_PATH);
    ck_assert_int_eq(explicit_path, 0);
    setenv("KEYGATE_CONFIG", "/x/env.ini", 1);
    ck_assert_str_eq(kg_config_pick_path(NULL, &explicit_path), "/x/env.ini");
    ck_assert_int_eq(explicit_path, 1);
    ck_assert_str_eq(kg_config_pick_path("/x/given.ini", &explicit_path),
                     "/x/given.ini");
    setenv("KEYGATE_CONFIG", "", 1);
    ck_assert_str_eq(kg_config_pick_path(NULL, &explicit_path),
                     KG_CONFIG_DEFAULT_PATH);
    ck_assert_int_eq(explicit_path, 0);
    unsetenv("KEYGATE_CONFIG");
}
END_TEST

START_TEST(test_to_json)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};
    const kg_setting_t *table;
    size_t count = 0;
    size_t members = 0;
    json_t *root;
    json_t *sec;   /* borrowed */
    json_t *value; /* borrowed */
    const char *name;

    ut_tmpdir(dir);
    ck_assert_int_eq(ut_load_text(dir,
                                  "[keys]\nmax_ttl = 30d\n"
                                  "default_ttl = 1h30m\n",
                                  path, &cfg, &diag),
                     KG_OK);
    root = kg_config_to_json(cfg);
    ck_assert_ptr_nonnull(root);
    table = kg_config_settings(&count);
    ck_assert_uint_gt(count, 0);
    for (size_t i = 0; i < count; i++) {
        sec = json_object_get(root, table[i].section);
        ck_assert_msg(json_is_object(sec), "no section [%s]", table[i].section);
        value = json_object_get(sec, table[i].name);
        ck_assert_msg(value != NULL, "no [%s] %s", table[i].section,
                      table[i].name);
        if (table[i].flags & KG_SETTING_SENSITIVE) {
            ck_assert_str_eq(json_string_value(value), "(redacted)");
        }
    }
    /* Nothing but the table's settings. */
    json_object_foreach(root, name, sec)
    {
        members += json_object_size(sec);
    }
    ck_assert_uint_eq(members, count);
    /* Values are printed the way an operator writes them. */
    sec = json_object_get(root, "keys");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "max_ttl")), "30d");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "default_ttl")),
                     "1h30m");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "prefix")), "kg");
    sec = json_object_get(root, "store");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "busy_timeout")),
                     "5s");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "path")),
                     "/var/lib/keygate/keygate.db");
    sec = json_object_get(root, "log");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "level")), "info");
    json_decref(root);
    kg_config_free(&cfg);
    ut_tmpdir_remove(dir);
}
END_TEST

/* Every default in the table parses and lies within its own bounds. */
START_TEST(test_table_sane)
{
    size_t count = 0;
    const kg_setting_t *table = kg_config_settings(&count);

    for (size_t i = 0; i < count; i++) {
        const kg_setting_t *s = &table[i];
        int64_t v = 0;
        kg_diag_t diag = {{0}};

        ck_assert_ptr_nonnull(s->section);
        ck_assert_ptr_nonnull(s->name);
        ck_assert_ptr_nonnull(s->def);
        ck_assert_ptr_nonnull(s->help);
        ck_assert_msg(
            (s->flags & (KG_SETTING_RESTART | KG_SETTING_RELOADABLE)) != 0 &&
                (s->flags & (KG_SETTING_RESTART | KG_SETTING_RELOADABLE)) !=
                    (KG_SETTING_RESTART | KG_SETTING_RELOADABLE),
            "[%s] %s: exactly one of RESTART, RELOADABLE", s->section, s->name);
        for (size_t j = 0; j < i; j++) {
            ck_assert_msg(strcmp(s->section, table[j].section) != 0 ||
                              strcmp(s->name, table[j].name) != 0,
                          "[%s] %s twice", s->section, s->name);
        }
        if (s->type == KG_SETTING_DURATION ||
            s->type == KG_SETTING_DURATION_MS) {
            ck_assert_int_eq(kg_duration_parse(s->def, &v, &diag), KG_OK);
            ck_assert(v >= s->min && v <= s->max);
        }
    }
}
END_TEST

/* Does the line at p start with prefix, or (commented) with ';' prefix? */
static const char *ut_line_starts(const char *p, const char *prefix,
                                  bool commented)
{
    size_t n = strlen(prefix);

    if (commented && *p == ';') {
        p++;
    }
    return strncmp(p, prefix, n) == 0 ? p + n : NULL;
}

/*
 * The text of every block that starts at a line beginning with header and
 * then ']' or ' ' ("[provider NAME]" for "[provider"), each ending before
 * the next line starting with next, joined (new string, or NULL when there
 * is none). With commented, the example file's commented-out sections
 * (";[provider openai]") count too.
 */
static char *ut_block(const char *text, const char *header, const char *next,
                      bool commented)
{
    const char *p = text;
    char *out = NULL;
    size_t used = 0;

    while (p != NULL && *p != '\0') {
        const char *rest = ut_line_starts(p, header, commented);
        const char *start;
        const char *end;
        char *grown;

        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
        if (rest == NULL || (*rest != ']' && *rest != ' ') || p == NULL) {
            continue;
        }
        start = p;
        end = start;
        while (*end != '\0' && ut_line_starts(end, next, commented) == NULL) {
            const char *nl = strchr(end, '\n');

            end = nl ? nl + 1 : end + strlen(end);
        }
        grown = realloc(out, used + (size_t)(end - start) + 1);
        ck_assert_ptr_nonnull(grown);
        out = grown;
        memcpy(out + used, start, (size_t)(end - start));
        used += (size_t)(end - start);
        out[used] = '\0';
        p = end;
    }
    return out;
}

/* True when some line of block is "name = ..." (or commented "; name ="). */
static bool ut_ini_has(const char *block, const char *name)
{
    size_t n = strlen(name);
    const char *p = block;

    while (p != NULL && *p != '\0') {
        const char *q = p;

        if (*q == ';' || *q == '#') {
            q++;
        }
        while (*q == ' ') {
            q++;
        }
        if (strncmp(q, name, n) == 0) {
            q += n;
            while (*q == ' ') {
                q++;
            }
            if (*q == '=') {
                return true;
            }
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return false;
}

/*
 * Whether the flags column (the fourth) of the row "| `name` |" in block
 * states s's flags: it starts with "reloadable" or "restart", and says
 * "sensitive" exactly when the setting is.
 */
static bool ut_md_flags_ok(const char *block, const kg_setting_t *s)
{
    char row[80];
    const char *p;
    const char *end;
    char flags[128];
    size_t n;

    snprintf(row, sizeof(row), "| `%s` |", s->name);
    p = strstr(block, row);
    for (int col = 0; p != NULL && col < 3; col++) {
        p = strchr(p + 1, '|');
    }
    if (p == NULL) {
        return false;
    }
    p++;
    end = strchr(p, '|');
    n = end != NULL ? (size_t)(end - p) : 0;
    if (n == 0 || n >= sizeof(flags)) {
        return false;
    }
    memcpy(flags, p, n);
    flags[n] = '\0';
    p = flags + strspn(flags, " ");
    if ((s->flags & KG_SETTING_RELOADABLE) != 0
            ? strncmp(p, "reloadable", 10) != 0
            : strncmp(p, "restart", 7) != 0) {
        return false;
    }
    return (strstr(p, "sensitive") != NULL) ==
           ((s->flags & KG_SETTING_SENSITIVE) != 0);
}

/*
 * Append to missing (len bytes) every row of table that is not documented
 * in md (as `name` under "## [section", its flags stated: "flags:" in
 * missing) and in ini (as "name =" under "[section").
 */
static void ut_docs_check(const kg_setting_t *table, size_t count,
                          const char *md, const char *ini, char *missing,
                          size_t len)
{
    for (size_t i = 0; i < count; i++) {
        char header[64];
        char quoted[64];
        char *block;
        size_t used = strlen(missing);

        snprintf(header, sizeof(header), "## [%s", table[i].section);
        snprintf(quoted, sizeof(quoted), "`%s`", table[i].name);
        block = ut_block(md, header, "## ", false);
        if (block == NULL || strstr(block, quoted) == NULL) {
            snprintf(missing + used, len - used, " configuration.md:[%s]%s",
                     table[i].section, table[i].name);
            used = strlen(missing);
        } else if (!ut_md_flags_ok(block, &table[i])) {
            snprintf(missing + used, len - used,
                     " configuration.md:flags:[%s]%s", table[i].section,
                     table[i].name);
            used = strlen(missing);
        }
        free(block);
        snprintf(header, sizeof(header), "[%s", table[i].section);
        block = ut_block(ini, header, "[", true);
        if (block == NULL || !ut_ini_has(block, table[i].name)) {
            snprintf(missing + used, len - used, " keygate.ini.example:[%s]%s",
                     table[i].section, table[i].name);
        }
        free(block);
    }
}

/* Every setting of the tables appears under its section in both docs. */
START_TEST(test_docs_list_every_setting)
{
    const char *md_path = KEYGATE_SOURCE_DIR "/docs/configuration.md";
    const char *ini_path = KEYGATE_SOURCE_DIR "/config/keygate.ini.example";
    char *md = ut_read_file(md_path, NULL);
    char *ini = ut_read_file(ini_path, NULL);
    char missing[4096] = "";
    const kg_setting_t *table;
    size_t count = 0;

    ck_assert_msg(md != NULL, "missing %s", md_path);
    ck_assert_msg(ini != NULL, "missing %s", ini_path);
    table = kg_config_settings(&count);
    ut_docs_check(table, count, md, ini, missing, sizeof(missing));
    table = kg_config_provider_settings(&count);
    ut_docs_check(table, count, md, ini, missing, sizeof(missing));
    table = kg_config_model_settings(&count);
    ut_docs_check(table, count, md, ini, missing, sizeof(missing));
    ck_assert_msg(missing[0] == '\0', "undocumented settings:%s", missing);
    free(md);
    free(ini);
}
END_TEST

/* The docs check itself finds a setting documented in the wrong place. */
START_TEST(test_docs_check_detects_gaps)
{
    static const kg_setting_t rows[] = {
        {"keys", "prefix", KG_SETTING_PREFIX, 0, "kg", KG_SETTING_RESTART, 0, 0,
         "x"},
        {"provider", "type", KG_SETTING_PROVIDER_TYPE, 0, NULL,
         KG_SETTING_RELOADABLE, 0, 0, "x"},
        {"provider", "base_url", KG_SETTING_URL, 0, NULL,
         KG_SETTING_RELOADABLE | KG_SETTING_SENSITIVE, 0, 0, "x"},
        {"provider", "api_key_env", KG_SETTING_SECRET_ENV, 0, NULL,
         KG_SETTING_RELOADABLE, 0, 0, "x"},
    };
    /* type's row is right; base_url's does not say sensitive; api_key_env's
     * says restart. */
    const char *md = "## [keys]\n\n| `max_ttl` |\n\n## [log]\n| `prefix` |\n"
                     "## [provider NAME]\n| `type` | t | - | reloadable, "
                     "required | x |\n| `base_url` | t | - | reloadable | x |\n"
                     "| `api_key_env` | t | - | restart | x |\n";
    const char *ini = "[keys]\nmax_ttl = 1d\n[log]\nprefix = kg\n"
                      ";[provider openai]\n;type = openai\n;base_url = u\n"
                      ";api_key_env = E\n";
    char missing[512] = "";

    ut_docs_check(rows, UT_NROWS(rows), md, ini, missing, sizeof(missing));
    ck_assert_str_eq(missing, " configuration.md:[keys]prefix "
                              "keygate.ini.example:[keys]prefix "
                              "configuration.md:flags:[provider]base_url "
                              "configuration.md:flags:[provider]api_key_env");
}
END_TEST

/* The example file loads, and its fixed sections are the defaults. */
START_TEST(test_example_file_loads)
{
    const char *ini_path = KEYGATE_SOURCE_DIR "/config/keygate.ini.example";
    kg_config_t *cfg = NULL;
    kg_config_t *def = NULL;
    kg_diag_t diag = {{0}};
    const kg_setting_t *table;
    size_t count = 0;
    json_t *a;
    json_t *b;

    ck_assert_msg(kg_config_load(ini_path, &cfg, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_config_load(NULL, &def, &diag), KG_OK);
    a = kg_config_to_json(cfg);
    b = kg_config_to_json(def);
    table = kg_config_settings(&count);
    for (size_t i = 0; i < count; i++) {
        json_t *va = json_object_get(json_object_get(a, table[i].section),
                                     table[i].name); /* borrowed */
        json_t *vb = json_object_get(json_object_get(b, table[i].section),
                                     table[i].name); /* borrowed */

        ck_assert_msg(va != NULL && json_equal(va, vb),
                      "[%s] %s in the example is not the default",
                      table[i].section, table[i].name);
    }
    json_decref(a);
    json_decref(b);
    kg_config_free(&cfg);
    kg_config_free(&def);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_every_setting);
    tcase_add_test(tc, test_relative_paths);
    tcase_add_loop_test(tc, test_good_files, 0, (int)UT_NROWS(ut_good_rows));
    tcase_add_test(tc, test_line_of_199_ok);
    tcase_add_loop_test(tc, test_bad_files, 0, (int)UT_NROWS(ut_bad_rows));
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_pick_path);
    tcase_add_test(tc, test_to_json);
    tcase_add_test(tc, test_table_sane);
    tcase_add_test(tc, test_docs_list_every_setting);
    tcase_add_test(tc, test_docs_check_detects_gaps);
    tcase_add_test(tc, test_example_file_loads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(config_suite());
}

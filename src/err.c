/* The error table expanded into names, HTTP statuses and messages. */
#include "keygate/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct err_info {
    const char *name;
    int status;
    const char *type;
    const char *code;
    const char *message;
} err_info_t;

static const err_info_t err_table[] = {
#define KG_ERR_ROW(name, status, type, code, msg) \
    {#name, status, type, code, msg},
    KG_ERR_MAP(KG_ERR_ROW)
#undef KG_ERR_ROW
};

static const err_info_t *err_lookup(kg_err_t err)
{
    if ((int)err < 0 || err >= KG_ERR__COUNT) {
        return NULL;
    }
    return &err_table[err];
}

const char *kg_err_name(kg_err_t err)
{
    const err_info_t *e = err_lookup(err);
    return e ? e->name : "UNKNOWN";
}

bool kg_err_is_store(kg_err_t err)
{
    return err == KG_ERR_STORE || err == KG_ERR_STORE_BUSY ||
           err == KG_ERR_STORE_MISSING || err == KG_ERR_STORE_CORRUPT ||
           err == KG_ERR_STORE_VERSION;
}

int kg_err_http_status(kg_err_t err)
{
    const err_info_t *e = err_lookup(err);
    return e ? e->status : 500;
}

const char *kg_err_type(kg_err_t err)
{
    const err_info_t *e = err_lookup(err);
    return e ? e->type : "server_error";
}

const char *kg_err_code(kg_err_t err)
{
    const err_info_t *e = err_lookup(err);
    return e ? e->code : "internal_error";
}

const char *kg_err_message(kg_err_t err)
{
    const err_info_t *e = err_lookup(err);
    return e ? e->message : "Internal server error.";
}

const char *kg_err_format(kg_err_t err, const char *detail, char *buf,
                          size_t len)
{
    const char *tmpl = kg_err_message(err);
    const char *hole = strstr(tmpl, "%s");

    if (hole == NULL) {
        snprintf(buf, len, "%s", tmpl);
    } else {
        snprintf(buf, len, "%.*s%s%s", (int)(hole - tmpl), tmpl,
                 detail ? detail : "", hole + 2);
    }
    return buf;
}

void kg_diag_set(kg_diag_t *diag, const char *fmt, ...)
{
    va_list ap;

    if (diag == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(diag->msg, sizeof(diag->msg), fmt, ap);
    va_end(ap);
}

kg_err_t kg_diag_fail(kg_diag_t *diag, kg_err_t err, const char *fmt, ...)
{
    va_list ap;

    if (diag != NULL) {
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof(diag->msg), fmt, ap);
        va_end(ap);
    }
    return err;
}

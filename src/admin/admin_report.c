/* Admin API: the effective configuration and the API's own description. */
#include "admin_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "admin_assets.h"
#include "keygate/buf.h"
#include "keygate/connlimit.h"
#include "keygate/keycache.h"
#include "keygate/metrics.h"
#include "keygate/usagedb.h"

/* A scrape's text at most. */
#define ADMIN_METRICS_MAX (16u << 20)

const admin_asset_t *admin_asset_find(const char *path)
{
    for (size_t i = 0; i < admin_assets_count; i++) {
        if (strcmp(admin_assets[i].path, path) == 0) {
            return &admin_assets[i];
        }
    }
    return NULL;
}

/* Answer a built-in file with its type. */
static void admin_reply_asset(admin_ctx_t *c, const admin_asset_t *a)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);

    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    }
    admin_reply_response(c, MHD_HTTP_OK, resp);
}

void admin_h_config(admin_ctx_t *c)
{
    admin_reply_json(c, MHD_HTTP_OK, kg_config_to_json(c->cfg));
}

void admin_h_openapi(admin_ctx_t *c)
{
    const admin_asset_t *a = admin_asset_find("/admin/v1/openapi.json");

    if (a == NULL) {
        admin_reply_error(c, KG_ERR_INTERNAL, NULL, NULL);
        return;
    }
    admin_reply_asset(c, a);
}

/* The gauges of the rest of the daemon, read now. */
static void admin_gauges(kg_gateway_t *gw, kg_metrics_gauges_t *g,
                         kg_usagedb_stats_t *us)
{
    kg_keycache_stats_t ks;

    memset(g, 0, sizeof(*g));
    memset(us, 0, sizeof(*us));
    if (gw->connlimit != NULL) {
        g->open_connections =
            (int64_t)kg_connlimit_count(gw->connlimit, NULL, 0, NULL);
    }
    if (gw->keycache != NULL) {
        kg_keycache_stats(gw->keycache, &ks);
        g->keycache_hits = (int64_t)ks.hits;
        g->keycache_negative_hits = (int64_t)ks.negative_hits;
        g->keycache_misses = (int64_t)ks.misses;
        g->keycache_entries = (int64_t)ks.entries;
    }
    if (gw->usage != NULL) {
        kg_usagedb_stats(gw->usage, us);
        g->usage_queue_depth = (int64_t)us->queued;
        g->usage_journal_bytes = (int64_t)us->journal_bytes;
        g->usage_committed = (int64_t)us->committed;
        g->usage_failed = (int64_t)us->failed;
        g->usage_rejected = (int64_t)us->rejected;
        g->usage_shed = (int64_t)us->shed;
        g->usage_backlogged = (int64_t)us->backlogged;
        g->commit_buckets = us->commit_buckets;
        g->commit_count = us->batches;
        g->commit_sum_us = (int64_t)us->commit_us;
    }
    g->draining = atomic_load(&gw->draining);
    g->config_reloads_ok = atomic_load(&gw->reloads_ok);
    g->config_reloads_failed = atomic_load(&gw->reloads_failed);
}

void admin_h_metrics(admin_ctx_t *c)
{
    kg_metrics_gauges_t g;
    kg_usagedb_stats_t us;
    struct MHD_Response *resp;
    kg_buf_t b;
    char *text;
    size_t len = 0;

    admin_gauges(c->gw, &g, &us);
    g.config_generation = c->gen->number; /* the request's: current */
    g.config_loaded_at = c->gen->loaded_at;
    kg_buf_init(&b, ADMIN_METRICS_MAX);
    if (kg_metrics_render(c->gw->metrics, &g, KEYGATE_VERSION, &b) != KG_OK) {
        kg_buf_free(&b);
        admin_reply_error(c, KG_ERR_INTERNAL, NULL, NULL);
        return;
    }
    text = kg_buf_steal(&b, &len);
    resp = MHD_create_response_from_buffer(len, text ? text : (char *)"",
                                           text ? MHD_RESPMEM_MUST_FREE
                                                : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(text);
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8");
    }
    admin_reply_response(c, MHD_HTTP_OK, resp);
}

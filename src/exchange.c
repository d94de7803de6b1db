/* One proxied request shared by the HTTP side and the upstream side. */
#include "keygate/exchange.h"

#include <microhttpd.h>
#include "keygate/clock.h"
#include <stdlib.h>
#include <string.h>

kg_exchange_t *kg_exchange_new(size_t max_out)
{
    kg_exchange_t *ex = calloc(1, sizeof(*ex));

    if (ex == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&ex->mu, NULL) != 0) {
        free(ex);
        return NULL;
    }
    atomic_init(&ex->refs, 1);
    kg_buf_init(&ex->out, max_out);
    return ex;
}

void kg_exchange_ref(kg_exchange_t *ex)
{
    atomic_fetch_add_explicit(&ex->refs, 1, memory_order_relaxed);
}

void kg_exchange_unref(kg_exchange_t *ex)
{
    if (ex == NULL ||
        atomic_fetch_sub_explicit(&ex->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    /* Normally settled by the proxy; this covers every other path. */
    if (ex->policy != NULL) {
        kg_policy_settle(ex->policy, &ex->ticket, 0, 0, kg_clock_now_ms());
    }
    if (ex->usage_place != NULL) {
        kg_usagedb_unhold(ex->usage_place);
    }
    pthread_mutex_destroy(&ex->mu);
    kg_buf_free(&ex->out);
    free(ex->held);
    free(ex->url);
    free(ex->body);
    kg_request_edits_clear(&ex->edits);
    free(ex);
}

void kg_exchange_wake_locked(kg_exchange_t *ex)
{
    if (ex->suspended && !ex->client_gone && ex->conn != NULL) {
        ex->suspended = false;
        MHD_resume_connection(ex->conn);
        if (ex->wake_loop != NULL) {
            ex->wake_loop(ex->wake_loop_ud);
        }
    }
}

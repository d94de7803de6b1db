/* One proxied request shared by the HTTP side and the upstream side. */
#ifndef KEYGATE_EXCHANGE_H
#define KEYGATE_EXCHANGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keygate/buf.h"
#include "keygate/generation.h"
#include "keygate/keycache.h"
#include "keygate/policy.h"
#include "keygate/providers.h"
#include "keygate/request.h"
#include "keygate/usagedb.h"

struct MHD_Connection;

#define KG_REQUEST_ID_LEN 24
#define KG_CLIENT_IP_MAX  46
/* An HTTP method kept for the access line (longer ones are cut). */
#define KG_METHOD_MAX 15
/* Relay buffer marks: pause the upstream above HIGH, resume below LOW. */
#define KG_RELAY_HIGH_WATER (256 * 1024)
#define KG_RELAY_LOW_WATER  (64 * 1024)

/* Where the answer stands, as the HTTP side sees it. */
typedef enum kg_phase {
    KG_PHASE_WAITING = 0, /* upstream has not answered yet */
    KG_PHASE_READY,       /* status known: queue the response */
    KG_PHASE_QUEUED,      /* the response is queued with MHD */
} kg_phase_t;

/*
 * The exchange. Fields in the first block are written by the HTTP side
 * before the exchange is handed to the proxy and are read-only after.
 * Fields under `mu` are shared. The proxy's private fields live in the
 * proxy module (ex->upstream).
 *
 * Lifetime: reference counted. The HTTP side holds one reference until
 * libmicrohttpd reports the request completed; the proxy holds one until
 * the transfer has ended; every pending usage event and queued command
 * holds one. The last kg_exchange_unref() frees it.
 */
typedef struct kg_exchange {
    atomic_int refs;
    char request_id[KG_REQUEST_ID_LEN + 1];
    kg_key_view_t key;
    const kg_model_t *model;       /* borrowed from the configuration */
    const kg_provider_t *provider; /* borrowed from the configuration */
    const char *operation;         /* static string: "chat", "messages", ... */
    char client_ip[KG_CLIENT_IP_MAX];
    bool stream_requested;
    bool client_wants_usage;
    int64_t input_estimate;
    char *url;  /* owned */
    char *body; /* owned, what goes upstream (the client's bytes) */
    size_t body_len;
    kg_request_edits_t edits; /* spliced into body on the way up; n = 0:
                                 body goes as it is */
    void *curl_headers;       /* struct curl_slist *, owned by the proxy */
    int64_t start_us;
    char method[KG_METHOD_MAX + 1]; /* for the access line */
    const char *endpoint;           /* its route's pattern (static) */
    /*
     * The configuration model and provider belong to: a use of the loop's
     * slot that the HTTP side takes for the proxy when it hands the
     * exchange over, and the proxy drops when it lets go of the exchange
     * (loop thread only).
     */
    kg_gen_slot_t *gen;
    size_t max_response_bytes; /* [upstream] max_response_bytes */
    bool log_request;          /* [server] request_log: an access line */
    bool counted;        /* the proxy recorded its summary (loop thread) */
    kg_policy_t *policy; /* borrowed: settles the ticket */
    kg_policy_ticket_t ticket; /* holds released once, at the end */
    int64_t charged_credits;   /* credits charged, reported after commit */
    /* The writer that keeps a place for its usage event (kg_usagedb_hold);
     * NULL once the event took it. The last unref gives back one unused. */
    kg_usagedb_t *usage_place;
    bool usage_journaled; /* its event is in the usage journal */
    /* Wakes the connection's event loop after a resume from any thread. */
    void (*wake_loop)(void *ud);
    void *wake_loop_ud;

    pthread_mutex_t mu;
    struct MHD_Connection *conn; /* NULL once the client side completed */
    int client_fd;               /* the connection's socket, for liveness */
    bool suspended;              /* the connection waits for a wake-up */
    bool client_gone;
    kg_phase_t phase;
    int status;
    kg_err_t error; /* set when keygate answers instead of the provider */
    bool is_sse;
    char content_type[128];
    char retry_after[32];
    kg_buf_t out; /* bytes for the client: the whole body, or SSE events */
    bool upstream_done;
    bool upstream_failed; /* ended by an error after the headers */
    bool paused;          /* the upstream transfer is paused */
    bool unpause_asked;
    char *held; /* terminal SSE event kept until its usage commits */
    size_t held_len;
    bool holding;

    void *upstream; /* proxy-private state */
} kg_exchange_t;

/* A new exchange with one reference; NULL on no memory. */
kg_exchange_t *kg_exchange_new(size_t max_out);

void kg_exchange_ref(kg_exchange_t *ex);

/* Drop a reference; frees the exchange on the last one. */
void kg_exchange_unref(kg_exchange_t *ex);

/*
 * Wake the HTTP side if it is suspended waiting for this exchange. Call
 * with ex->mu held. Never touches a connection that has completed.
 */
void kg_exchange_wake_locked(kg_exchange_t *ex);

#endif /* KEYGATE_EXCHANGE_H */

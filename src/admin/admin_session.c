/* Dashboard sessions: an admin token signed in, held in memory only. */
#include "admin_internal.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/*
 * A session is found by the BLAKE2b hash of its cookie value, so the table
 * never holds the value itself (a memory dump shows no usable cookie) and
 * the lookup's timing says nothing about it.
 */
typedef struct admin_session {
    unsigned char sid_hash[32];
    char token_id[KG_TOKEN_ID_LEN + 1];
    char csrf[ADMIN_CSRF_LEN + 1];
    int64_t created;
    int64_t expires;
    bool live;
} admin_session_t;

struct admin_sessions {
    pthread_mutex_t mu;
    int64_t ttl;
    admin_session_t *slots; /* ADMIN_SESSIONS_MAX */
};

kg_err_t admin_sessions_new(int64_t ttl, admin_sessions_t **out)
{
    admin_sessions_t *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL) {
        return KG_ERR_NOMEM;
    }
    s->slots = sodium_allocarray(ADMIN_SESSIONS_MAX, sizeof(*s->slots));
    if (s->slots == NULL) {
        free(s);
        return KG_ERR_NOMEM;
    }
    memset(s->slots, 0, ADMIN_SESSIONS_MAX * sizeof(*s->slots));
    pthread_mutex_init(&s->mu, NULL);
    s->ttl = ttl;
    *out = s;
    return KG_OK;
}

void admin_sessions_free(admin_sessions_t **ps)
{
    if (ps == NULL || *ps == NULL) {
        return;
    }
    sodium_free((*ps)->slots); /* wipes */
    pthread_mutex_destroy(&(*ps)->mu);
    free(*ps);
    *ps = NULL;
}

static void admin_random_b64(char *out)
{
    unsigned char raw[32];

    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(out, ADMIN_CSRF_LEN + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
}

static void admin_sid_hash(const char *sid, unsigned char out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)sid, strlen(sid), NULL,
                       0);
}

kg_err_t admin_sessions_open(admin_sessions_t *s, const kg_admin_token_t *t,
                             int64_t now, char *sid, char *csrf,
                             int64_t *expires)
{
    admin_session_t *slot = NULL;

    admin_random_b64(sid);
    admin_random_b64(csrf);
    pthread_mutex_lock(&s->mu);
    /* A free or expired slot, else the oldest session goes. */
    for (size_t i = 0; i < ADMIN_SESSIONS_MAX; i++) {
        admin_session_t *e = &s->slots[i];

        if (!e->live || e->expires <= now) {
            slot = e;
            break;
        }
        if (slot == NULL || e->created < slot->created) {
            slot = e;
        }
    }
    memset(slot, 0, sizeof(*slot));
    admin_sid_hash(sid, slot->sid_hash);
    memcpy(slot->token_id, t->id, sizeof(slot->token_id));
    memcpy(slot->csrf, csrf, sizeof(slot->csrf));
    slot->created = now;
    slot->expires = now + s->ttl;
    if (t->expires_at >= 0 && t->expires_at < slot->expires) {
        slot->expires = t->expires_at; /* never outlives its token */
    }
    slot->live = true;
    *expires = slot->expires;
    pthread_mutex_unlock(&s->mu);
    return KG_OK;
}

bool admin_sessions_find(admin_sessions_t *s, const char *sid, int64_t now,
                         char *token_id, char *csrf, int64_t *expires)
{
    unsigned char h[32];
    bool found = false;

    if (strlen(sid) != ADMIN_CSRF_LEN) {
        return false;
    }
    admin_sid_hash(sid, h);
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < ADMIN_SESSIONS_MAX && !found; i++) {
        admin_session_t *e = &s->slots[i];

        if (e->live && sodium_memcmp(e->sid_hash, h, sizeof(h)) == 0) {
            if (e->expires <= now) {
                sodium_memzero(e, sizeof(*e));
                break;
            }
            memcpy(token_id, e->token_id, sizeof(e->token_id));
            memcpy(csrf, e->csrf, sizeof(e->csrf));
            *expires = e->expires;
            found = true;
        }
    }
    pthread_mutex_unlock(&s->mu);
    sodium_memzero(h, sizeof(h));
    return found;
}

void admin_sessions_close(admin_sessions_t *s, const char *sid)
{
    unsigned char h[32];

    admin_sid_hash(sid, h);
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < ADMIN_SESSIONS_MAX; i++) {
        admin_session_t *e = &s->slots[i];

        if (e->live && sodium_memcmp(e->sid_hash, h, sizeof(h)) == 0) {
            sodium_memzero(e, sizeof(*e));
        }
    }
    pthread_mutex_unlock(&s->mu);
    sodium_memzero(h, sizeof(h));
}

void admin_sessions_close_token(admin_sessions_t *s, const char *token_id)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < ADMIN_SESSIONS_MAX; i++) {
        admin_session_t *e = &s->slots[i];

        if (e->live && strcmp(e->token_id, token_id) == 0) {
            sodium_memzero(e, sizeof(*e));
        }
    }
    pthread_mutex_unlock(&s->mu);
}

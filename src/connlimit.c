/* Client connection limits shared by every event loop: in all and per IP. */
#include "keygate/connlimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

/* One client address (16 bytes, IPv4 as IPv4-mapped IPv6) and its count. */
struct kg_connlimit_slot {
    unsigned char addr[16];
    size_t count;
    UT_hash_handle hh;
};

struct kg_connlimit {
    pthread_mutex_t mu;
    size_t max_total;
    size_t max_per_ip;
    size_t total;
    kg_connlimit_slot_t *by_addr;
};

/* The 16-byte key of sa; false for a family without an address. */
static bool connlimit_key(const struct sockaddr *sa, socklen_t len,
                          unsigned char out[16])
{
    memset(out, 0, 16);
    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;

        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, &a4->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;

        memcpy(out, &a6->sin6_addr, 16);
        return true;
    }
    return false;
}

kg_err_t kg_connlimit_new(size_t max_total, size_t max_per_ip,
                          kg_connlimit_t **out)
{
    kg_connlimit_t *cl = calloc(1, sizeof(*cl));

    *out = NULL;
    if (cl == NULL) {
        return KG_ERR_NOMEM;
    }
    pthread_mutex_init(&cl->mu, NULL);
    cl->max_total = max_total;
    cl->max_per_ip = max_per_ip;
    *out = cl;
    return KG_OK;
}

void kg_connlimit_free(kg_connlimit_t **pcl)
{
    kg_connlimit_t *cl;
    kg_connlimit_slot_t *s;
    kg_connlimit_slot_t *tmp;

    if (pcl == NULL || *pcl == NULL) {
        return;
    }
    cl = *pcl;
    HASH_ITER(hh, cl->by_addr, s, tmp)
    {
        HASH_DEL(cl->by_addr, s);
        free(s);
    }
    pthread_mutex_destroy(&cl->mu);
    free(cl);
    *pcl = NULL;
}

kg_connlimit_slot_t *kg_connlimit_acquire(kg_connlimit_t *cl,
                                          const struct sockaddr *sa,
                                          socklen_t len)
{
    unsigned char key[16];
    kg_connlimit_slot_t *s = NULL;

    /* A socket without an address (a Unix socket) shares one slot. */
    (void)connlimit_key(sa, len, key);
    pthread_mutex_lock(&cl->mu);
    if (cl->total >= cl->max_total) {
        goto refuse;
    }
    HASH_FIND(hh, cl->by_addr, key, sizeof(key), s);
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            goto refuse;
        }
        memcpy(s->addr, key, sizeof(key));
        HASH_ADD(hh, cl->by_addr, addr, sizeof(s->addr), s);
        if (s->hh.tbl == NULL) {
            free(s);
            goto refuse;
        }
    } else if (cl->max_per_ip > 0 && s->count >= cl->max_per_ip) {
        goto refuse;
    }
    s->count++;
    cl->total++;
    pthread_mutex_unlock(&cl->mu);
    return s;
refuse:
    pthread_mutex_unlock(&cl->mu);
    return NULL;
}

void kg_connlimit_release(kg_connlimit_t *cl, kg_connlimit_slot_t *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&cl->mu);
    cl->total--;
    if (--s->count == 0) {
        HASH_DEL(cl->by_addr, s);
        free(s);
    }
    pthread_mutex_unlock(&cl->mu);
}

size_t kg_connlimit_count(kg_connlimit_t *cl, const struct sockaddr *sa,
                          socklen_t len, size_t *from_sa)
{
    unsigned char key[16];
    kg_connlimit_slot_t *s = NULL;
    size_t total;

    (void)connlimit_key(sa, len, key);
    pthread_mutex_lock(&cl->mu);
    total = cl->total;
    if (from_sa != NULL) {
        HASH_FIND(hh, cl->by_addr, key, sizeof(key), s);
        *from_sa = s ? s->count : 0;
    }
    pthread_mutex_unlock(&cl->mu);
    return total;
}

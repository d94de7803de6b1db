/* Client connection limits shared by every event loop: in all and per IP. */
#ifndef KEYGATE_CONNLIMIT_H
#define KEYGATE_CONNLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "keygate/err.h"

typedef struct kg_connlimit kg_connlimit_t;
typedef struct kg_connlimit_slot kg_connlimit_slot_t;

/*
 * A new table: at most max_total connections, at most max_per_ip from one
 * address (0: no per-address limit). *out is new (kg_connlimit_free).
 */
kg_err_t kg_connlimit_new(size_t max_total, size_t max_per_ip,
                          kg_connlimit_t **out) KG_MUST_CHECK;

void kg_connlimit_free(kg_connlimit_t **cl);

/*
 * Count a new connection from sa. Returns its slot (give it back with
 * kg_connlimit_release when the connection closes), or NULL when a limit
 * is reached or on no memory: refuse the connection. IPv4-mapped IPv6
 * addresses count as their IPv4 address. Thread-safe.
 */
kg_connlimit_slot_t *kg_connlimit_acquire(kg_connlimit_t *cl,
                                          const struct sockaddr *sa,
                                          socklen_t len);

/* The connection of slot closed. NULL: nothing. Thread-safe. */
void kg_connlimit_release(kg_connlimit_t *cl, kg_connlimit_slot_t *slot);

/* Connections counted now, in all and from sa. Thread-safe. */
size_t kg_connlimit_count(kg_connlimit_t *cl, const struct sockaddr *sa,
                          socklen_t len, size_t *from_sa);

#endif /* KEYGATE_CONNLIMIT_H */

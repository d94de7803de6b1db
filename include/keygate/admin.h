/* The admin listener: admin API, /metrics, health and the dashboard. */
#ifndef KEYGATE_ADMIN_H
#define KEYGATE_ADMIN_H

#include <stdint.h>

#include "keygate/err.h"

struct kg_gateway;

typedef struct kg_admin kg_admin_t;

/*
 * Start the admin listener of gw on [admin] listen with its own
 * libmicrohttpd threads ([admin] threads) and its own store connections:
 * nothing it does runs on, or waits for, the gateway's event loops. gw is
 * borrowed and must outlive the listener. Returns KG_OK with *out new
 * (kg_admin_stop) and *port the bound port, or the error that kept it
 * from starting (KG_ERR_CONFIG: cannot listen; store errors) with diag.
 * With [admin] listen empty nothing starts: KG_OK, *out NULL, *port 0.
 */
kg_err_t kg_admin_start(struct kg_gateway *gw, kg_admin_t **out, uint16_t *port,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* Stop the listener (closing its connections), free it, set *a to NULL. */
void kg_admin_stop(kg_admin_t **a);

#endif /* KEYGATE_ADMIN_H */

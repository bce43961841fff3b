/* The ex_data slots the module hangs its state on (an SSL's connection, an
 * SSL_CTX's ticket keys), made once per process. Called by tls_ctx.c and
 * tls_tickets.c, which do not call each other back. */
#include "tls/tls_int.h"

#include <pthread.h>

/* ---- ex_data slots ---------------------------------------------------------- */

static int conn_index = -1, keys_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void make_indices(void)
{
    conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    keys_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int sg__tls_conn_index(void)
{
    pthread_once(&index_once, make_indices);
    return conn_index;
}

int sg__tls_keys_index(void)
{
    pthread_once(&index_once, make_indices);
    return keys_index;
}

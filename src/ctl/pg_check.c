/* --check-db (main.c): prepares every query the poller would run against
 * the real database, without running one, and says which table or column
 * is missing. A command-line check, so it blocks; never called by the
 * running proxy. */
#include "ctl/pg_int.h"

#include <libpq-fe.h>

#include <stdlib.h>
#include <string.h>

#define OID_INT8 20
#define OID_INT4 23

typedef struct check {
    sg_pg_t *pg;
    PGconn *conn;
    FILE *out;
    unsigned problems;
} check_t;

static void say(check_t *c, const char *query, const char *msg)
{
    char m[PG_MSG];
    snprintf(m, sizeof(m), "%s", msg);
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
        m[--n] = 0;
    for (char *p = m; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    sg__pg_mask_secret(m, c->pg->password);
    fprintf(c->out, "postgres: query %s: %s\n", query, m);
    c->problems++;
}

/* Prepares sql as the unnamed statement and checks its result has every
 * column in cols. */
static void check_sql(check_t *c, const char *query, const char *sql, int n_params, const char *const *cols,
                      size_t n_cols)
{
    static const Oid types[] = {OID_INT8, OID_INT4};
    PGresult *r = PQprepare(c->conn, "", sql, n_params, n_params ? types : NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char m[PG_MSG];
        if (primary)
            snprintf(m, sizeof(m), "%s (SQLSTATE %s)", primary, state ? state : "?");
        else
            snprintf(m, sizeof(m), "%s", PQerrorMessage(c->conn));
        say(c, query, m);
        PQclear(r);
        return;
    }
    PQclear(r);
    r = PQdescribePrepared(c->conn, "");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        say(c, query, PQerrorMessage(c->conn));
        PQclear(r);
        return;
    }
    if (PQnfields(r) == 0)
        say(c, query, "the statement returns no columns (not a SELECT?)");
    for (size_t i = 0; i < n_cols && PQnfields(r) > 0; i++)
        if (PQfnumber(r, cols[i]) < 0) {
            char m[256];
            snprintf(m, sizeof(m), "no column \"%s\" in its result", cols[i]);
            say(c, query, m);
        }
    PQclear(r);
}

int sg_pg_check_db(const sg_pg_conf_t *conf, FILE *out)
{
    char err[PG_MSG] = "";
    if (!conf || !conf->conninfo || !*conf->conninfo) {
        fprintf(out, "postgres: postgres.conninfo is empty: nothing to check\n");
        return 2;
    }
    sg_pg_t *pg = calloc(1, sizeof(*pg));
    if (!pg) {
        fprintf(out, "postgres: out of memory\n");
        return 1;
    }
    sg_arena_init(&pg->arena, 8192);
    int rc = 2;
    PGconn *conn = NULL;
    const char **kw = NULL, **vals = NULL;
    if (sg__pg_setup(pg, conf, NULL, err, sizeof(err)) != 0) {
        fprintf(out, "%s\n", err);
        goto out;
    }
    /* libpq resolves a host name itself here (blocking is fine for a
     * command): the hostaddr slot stays empty. One more slot for the
     * connect timeout. */
    kw = calloc(pg->n_kw + 2, sizeof(*kw));
    vals = calloc(pg->n_kw + 2, sizeof(*vals));
    if (!kw || !vals) {
        fprintf(out, "postgres: out of memory\n");
        rc = 1;
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < pg->n_kw; i++)
        if (pg->vals[i] && strcmp(pg->kw[i], "connect_timeout")) {
            kw[k] = pg->kw[i];
            vals[k++] = pg->vals[i];
        }
    char timeout[24];
    snprintf(timeout, sizeof(timeout), "%llu", (unsigned long long)((pg->connect_timeout_ms + 999) / 1000));
    kw[k] = "connect_timeout";
    vals[k++] = timeout;
    conn = PQconnectdbParams(kw, vals, 0);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        char m[PG_MSG];
        snprintf(m, sizeof(m), "%s", conn ? PQerrorMessage(conn) : "out of memory");
        sg__pg_mask_secret(m, pg->password);
        size_t n = strlen(m);
        while (n && m[n - 1] == '\n')
            m[--n] = 0;
        fprintf(out, "postgres: cannot connect: %s\n", m);
        rc = 1;
        goto out;
    }
    check_t c = {pg, conn, out, 0};
    size_t n_checked = 0;
    for (size_t i = 0; i < pg->n_queries; i++) {
        const pg_query_t *q = &pg->queries[i];
        if (q->kind == PG_Q_TRANSITIONS) {
            static const char *const tcols[] = {"id", "from_state", "to_state", "seconds"};
            check_sql(&c, "transitions_start_sql", pg->transitions_start_sql, 0, NULL, 0);
            check_sql(&c, q->label, q->sql, 2, tcols, SG_ARRAY_SIZE(tcols));
            n_checked += 2;
            continue;
        }
        const char *cols[17];
        size_t n = 0;
        cols[n++] = q->value;
        for (size_t j = 0; j < q->n_labels && n < SG_ARRAY_SIZE(cols); j++)
            cols[n++] = q->labels[j];
        check_sql(&c, q->label, q->sql, 0, cols, n);
        n_checked++;
    }
    if (c.problems) {
        fprintf(out, "postgres: %u problem(s) in %zu statements: the database does not fit the configured queries\n",
                c.problems, n_checked);
        rc = 2;
    } else {
        fprintf(out, "postgres OK: %zu statements prepare against the database\n", n_checked);
        rc = 0;
    }
out:
    if (conn)
        PQfinish(conn);
    free(kw);
    free(vals);
    sg__pg_free_queries(pg);
    sg_arena_destroy(&pg->arena);
    free(pg);
    return rc;
}

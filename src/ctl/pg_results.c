/* A Postgres poller's query results (control thread): rows into a query's
 * snapshot of series (zero-filled), the transition events into the
 * per-pair histograms, and the first error of a run. The scheduler
 * (pg_sched.c) hands each result here. */
#include "ctl/pg_int.h"

#include <libpq-fe.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sg__pg_query_error(sg_pg_t *pg, const char *fmt, ...)
{
    char d[PG_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d, sizeof(d), fmt, ap);
    va_end(ap);
    if (!pg->query_failed) /* the first error of a run says why */
        snprintf(pg->query_msg, sizeof(pg->query_msg), "%s", d);
    pg->query_failed = true;
}

static bool parse_double(const char *s, double *out)
{
    if (!strcmp(s, "t")) {
        *out = 1;
        return true;
    }
    if (!strcmp(s, "f")) {
        *out = 0;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE)
        return false;
    *out = v;
    return true;
}

static bool find_series(const pg_snap_t *s, size_t n_labels, size_t upto, char **vals)
{
    for (size_t i = 0; i < upto; i++) {
        size_t j = 0;
        while (j < n_labels && !strcmp(s->label_values[i * n_labels + j], vals[j]))
            j++;
        if (j == n_labels)
            return true;
    }
    return false;
}

static int snap_add(pg_snap_t *s, size_t n_labels, size_t *cap, const char *const *vals, double v)
{
    if (s->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        char **lv = realloc(s->label_values, nc * (n_labels ? n_labels : 1) * sizeof(char *));
        if (!lv)
            return -1;
        s->label_values = lv;
        double *dv = realloc(s->values, nc * sizeof(double));
        if (!dv)
            return -1;
        s->values = dv;
        *cap = nc;
    }
    for (size_t j = 0; j < n_labels; j++) {
        s->label_values[s->n * n_labels + j] = strdup(vals[j]);
        if (!s->label_values[s->n * n_labels + j]) {
            for (size_t k = 0; k < j; k++)
                free(s->label_values[s->n * n_labels + k]);
            return -1;
        }
    }
    s->values[s->n++] = v;
    return 0;
}

void sg__pg_handle_series(sg_pg_t *pg, pg_query_t *q, struct pg_result *r)
{
    int cols[16];
    int vcol = PQfnumber(r, q->value);
    if (vcol < 0) {
        sg__pg_query_error(pg, "no value column \"%s\" in the result", q->value);
        return;
    }
    for (size_t j = 0; j < q->n_labels; j++) {
        cols[j] = PQfnumber(r, q->labels[j]);
        if (cols[j] < 0) {
            sg__pg_query_error(pg, "no label column \"%s\" in the result", q->labels[j]);
            return;
        }
    }
    pg_snap_t *s = calloc(1, sizeof(*s));
    size_t cap = 0;
    if (!s)
        goto oom;
    char *vals[16];
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(r, i, vcol))
            continue;
        double v;
        if (!parse_double(PQgetvalue(r, i, vcol), &v)) {
            sg__pg_snap_free(s, q->n_labels);
            sg__pg_query_error(pg, "value \"%.64s\" in column \"%s\" is not a number", PQgetvalue(r, i, vcol),
                               q->value);
            return;
        }
        for (size_t j = 0; j < q->n_labels; j++)
            vals[j] = PQgetvalue(r, i, cols[j]); /* "" for NULL */
        if (find_series(s, q->n_labels, s->n, vals))
            continue; /* duplicate label set: the first row wins */
        if (snap_add(s, q->n_labels, &cap, (const char *const *)vals, v) != 0)
            goto oom;
    }
    /* Zero-fill: every listed value of a label appears, other labels "". */
    for (size_t z = 0; z < q->n_zero_fill; z++) {
        const sg_zero_fill_t *zf = &q->zero_fill[z];
        size_t li = 0;
        while (li < q->n_labels && strcmp(q->labels[li], zf->label))
            li++;
        if (li == q->n_labels)
            continue;
        size_t before = s->n;
        for (size_t k = 0; k < zf->n_values; k++) {
            bool seen = false;
            for (size_t i = 0; i < before && !seen; i++)
                seen = !strcmp(s->label_values[i * q->n_labels + li], zf->values[k]);
            if (seen)
                continue;
            for (size_t j = 0; j < q->n_labels; j++)
                vals[j] = j == li ? (char *)zf->values[k] : "";
            if (snap_add(s, q->n_labels, &cap, (const char *const *)vals, 0) != 0)
                goto oom;
        }
    }
    s->updated_ms = uv_now(pg->loop);
    sg__pg_snap_free(q->snap, q->n_labels);
    q->snap = s; /* atomic for readers: collect runs on this thread */
    return;
oom:
    sg__pg_snap_free(s, q->n_labels);
    sg__pg_query_error(pg, "out of memory");
}

static pg_pair_t *pair_get(sg_pg_t *pg, const char *from, const char *to)
{
    for (size_t i = 0; i < pg->n_pairs; i++)
        if (!strcmp(pg->pairs[i].from, from) && !strcmp(pg->pairs[i].to, to))
            return &pg->pairs[i];
    if (pg->n_pairs == PG_MAX_TRANSITION_PAIRS) {
        /* Bounded cardinality: the rest go to one overflow series. */
        from = "other";
        to = "other";
        for (size_t i = 0; i < pg->n_pairs; i++)
            if (!strcmp(pg->pairs[i].from, from) && !strcmp(pg->pairs[i].to, to))
                return &pg->pairs[i];
        return &pg->pairs[pg->n_pairs - 1];
    }
    pg_pair_t *p = &pg->pairs[pg->n_pairs];
    p->from = strdup(from);
    p->to = strdup(to);
    if (!p->from || !p->to || sg__pg_hist_init(&p->h, pg->n_tr_bounds) != 0) {
        free(p->from);
        free(p->to);
        return NULL;
    }
    pg->n_pairs++;
    return p;
}

void sg__pg_handle_transitions(sg_pg_t *pg, pg_query_t *q, struct pg_result *r)
{
    int rows = PQntuples(r);
    if (!pg->has_cursor) {
        if (rows < 1 || PQnfields(r) < 1 || PQgetisnull(r, 0, 0)) {
            sg__pg_query_error(pg, "start query returned no id");
            return;
        }
        pg->last_event_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        pg->has_cursor = true;
        q->run_again = true; /* fetch what came since right away */
        return;
    }
    int c_id = PQfnumber(r, "id"), c_from = PQfnumber(r, "from_state"), c_to = PQfnumber(r, "to_state"),
        c_sec = PQfnumber(r, "seconds");
    if (c_id < 0 || c_from < 0 || c_to < 0 || c_sec < 0) {
        sg__pg_query_error(pg, "result needs columns id, from_state, to_state, seconds");
        return;
    }
    for (int i = 0; i < rows; i++) {
        int64_t id = strtoll(PQgetvalue(r, i, c_id), NULL, 10);
        if (id > pg->last_event_id)
            pg->last_event_id = id;
        /* A ticket's first event has no previous one: nothing to time. */
        if (PQgetisnull(r, i, c_sec) || PQgetisnull(r, i, c_from))
            continue;
        double secs;
        if (!parse_double(PQgetvalue(r, i, c_sec), &secs) || isnan(secs))
            continue;
        if (secs < 0) /* back-dated event: count it, at zero */
            secs = 0;
        pg_pair_t *p = pair_get(pg, PQgetvalue(r, i, c_from), PQgetvalue(r, i, c_to));
        if (!p)
            continue;
        sg__pg_hist_observe(&p->h, pg->tr_bounds, pg->n_tr_bounds, secs);
        pg->stats.transitions++;
    }
    if ((uint32_t)rows >= pg->batch)
        q->run_again = true;
}

void sg__pg_pairs_free(sg_pg_t *pg)
{
    for (size_t i = 0; i < pg->n_pairs; i++) {
        free(pg->pairs[i].from);
        free(pg->pairs[i].to);
        free(pg->pairs[i].h.counts);
    }
}

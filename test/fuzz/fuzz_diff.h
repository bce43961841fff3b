/* Shared by the differential targets fuzz_diff_request.c and
 * fuzz_diff_response.c: comparing what swarmgate saw (sg_h1_head_t,
 * decoded body) with what the strict reference reader (h1ref.c) reads, and
 * the failure report. Every mismatch fails (the temporary allow-list of
 * leniencies under repair is gone: all of them were fixed in #15). */
#ifndef SG_FUZZ_DIFF_H
#define SG_FUZZ_DIFF_H

#include "fuzz_check.h"
#include "h1ref.c"
#include "sg/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool diff_eq(sg_str_t a, h1ref_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool diff_eq_cstr(const char *a, size_t alen, h1ref_str_t b)
{
    return alen == b.len && (alen == 0 || memcmp(a, b.p, alen) == 0);
}

/* The fields swarmgate parsed (names as sent, values without OWS) are
 * exactly the reference's, in order. */
static bool diff_fields_eq(const sg_h1_head_t *h, const h1ref_out_t *r, const h1ref_msg_t *m)
{
    if (h->n_headers != m->n_fields)
        return false;
    for (size_t k = 0; k < m->n_fields; k++) {
        const h1ref_field_t *f = &r->fields[m->field0 + k];
        if (!diff_eq(h->headers[k].name, f->name) || !diff_eq(h->headers[k].value, f->value))
            return false;
    }
    return true;
}

static bool diff_trailers_eq(const h1ref_out_t *a, const h1ref_msg_t *ma, const h1ref_out_t *b, const h1ref_msg_t *mb)
{
    if (ma->n_trailers != mb->n_trailers)
        return false;
    for (size_t k = 0; k < ma->n_trailers; k++) {
        const h1ref_field_t *x = &a->fields[ma->trailer0 + k], *y = &b->fields[mb->trailer0 + k];
        if (x->name.len != y->name.len || memcmp(x->name.p, y->name.p, x->name.len) != 0 ||
            x->value.len != y->value.len || memcmp(x->value.p, y->value.p, x->value.len) != 0)
            return false;
    }
    return true;
}

/* swarmgate checks some things when a line ends (the chunk-size value and
 * chunk extensions, in llhttp's callbacks at CRLF) where the reference
 * stops at the first byte that cannot be: bytes of a line still open when
 * the input ends (or the read is refused) may have gone on. A reference
 * error at err_off is such a case when no LF follows it in p[err_off..end). */
static bool diff_err_in_open_line(const char *p, size_t err_off, size_t end)
{
    return err_off >= end || memchr(p + err_off, '\n', end - err_off) == NULL;
}

static bool diff_body_eq(const char *sg_body, size_t sg_len, const h1ref_out_t *r, const h1ref_msg_t *m)
{
    return sg_len == m->body_len && (sg_len == 0 || memcmp(sg_body, r->body + m->body0, sg_len) == 0);
}

/* What a failed comparison is about. */
typedef enum diff_kind {
    DIFF_CLIENT = 0, /* (b): swarmgate accepted bytes the reference reads otherwise */
    DIFF_FORWARDED,  /* (a): what swarmgate sent on, read by the reference, is not what swarmgate saw */
    DIFF_UNDERSCORE, /* policy: a field name with '_' went on */
    DIFF_CONNECT,    /* policy: a reverse listener never forwards CONNECT (a 2xx to it is a tunnel, RFC 9112 6.3) */
} diff_kind_t;

/* SG_DIFF_TRACE=1: one summary line per input (what was compared). */
static bool diff_tracing(void)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SG_DIFF_TRACE");
        on = e && *e == '1';
    }
    return on == 1;
}

static void diff_print(const char *label, const char *p, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes): \"", label, n);
    for (size_t i = 0; i < n && i < 2048; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r')
            fputs("\\r", stderr);
        else if (ch == '\n')
            fputs("\\n\"\n    \"", stderr);
        else if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            fprintf(stderr, "\\x%02x", ch);
        else
            fputc(ch, stderr);
    }
    fputs("\"\n", stderr);
}

static void diff_print_ref(const char *label, const h1ref_out_t *r)
{
    static const char *const st[] = {"end", "partial", "error"};
    fprintf(stderr, "  reference on %s: %zu complete message(s), state %s", label, r->n_msgs, st[r->state]);
    if (r->state == H1REF_ERROR)
        fprintf(stderr, " (%s at offset %zu)", h1ref_err_name(r->err), r->err_off);
    fputc('\n', stderr);
    for (size_t i = 0; i <= r->n_msgs && i < H1REF_MAX_MSGS; i++) {
        const h1ref_msg_t *m = &r->msg[i];
        if (i == r->n_msgs && r->state == H1REF_END)
            break;
        fprintf(stderr, "    msg %zu: start %zu head_end %zu end %zu framing %d body %zu\n", i, m->start, m->head_end,
                m->end, (int)m->framing, m->body_len);
    }
}

#endif /* SG_FUZZ_DIFF_H */

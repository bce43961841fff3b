/* TEMPORARY: a minimal stand-in for src/obs/trace.c (another helper's
 * module) so the data path links and runs before it lands. Deleted at the
 * merge that brings the real one. Only what the proxy calls. */
#include "sg/trace.h"

#include <stdio.h>
#include <sys/random.h>

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int sg_trace_id_parse(sg_str_t in, char out[SG_TRACE_ID_LEN + 1])
{
    if (in.len != SG_TRACE_ID_LEN)
        return -1;
    bool nonzero = false;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.p[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return -1;
        } else {
            if (!is_hex(c))
                return -1;
            if (c != '0')
                nonzero = true;
        }
        out[i] = sg_ascii_lower(c);
    }
    out[SG_TRACE_ID_LEN] = '\0';
    return nonzero ? 0 : -1;
}

void sg_trace_id_generate(char out[SG_TRACE_ID_LEN + 1])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        memset(b, 0x5a, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, SG_TRACE_ID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void sg_span_id_generate(char out[SG_SPAN_ID_LEN + 1])
{
    unsigned char b[8];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        memset(b, 0x5a, sizeof(b));
    b[0] |= 1;
    snprintf(out, SG_SPAN_ID_LEN + 1, "%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6],
             b[7]);
}

void sg_trace_resolve(const sg_trace_in_t *in, bool sample_new, sg_trace_ctx_t *out)
{
    memset(out, 0, sizeof(*out));
    if (in->n_xtid == 1 && sg_trace_id_parse(in->xtid[0], out->trace_id) == 0) {
        out->source = SG_TRACE_SRC_FORWARDED;
    } else {
        sg_trace_id_generate(out->trace_id);
        out->source = in->n_xtid ? SG_TRACE_SRC_REPLACED : SG_TRACE_SRC_GENERATED;
        out->had_invalid = in->n_xtid != 0;
    }
    sg_span_id_generate(out->span_id);
    out->flags = sample_new ? 1 : 0;
    char hex[SG_TRACE_HEX_LEN + 1];
    size_t k = 0;
    for (size_t i = 0; i < SG_TRACE_ID_LEN; i++)
        if (out->trace_id[i] != '-')
            hex[k++] = out->trace_id[i];
    hex[k] = '\0';
    snprintf(out->traceparent, sizeof(out->traceparent), "00-%s-%s-%02x", hex, out->span_id, out->flags);
}

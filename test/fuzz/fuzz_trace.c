/* Fuzzes the trace rules: arbitrary X-Trace-Id, traceparent and tracestate
 * values. Invariants: the chosen id is always a valid lower-case UUID, the
 * traceparent sent upstream always parses, and it carries the same id. */
#include "sg/trace.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Split the input on '\n' into header values, distributed over the headers. */
    sg_trace_in_t in;
    memset(&in, 0, sizeof(in));
    size_t start = 0, k = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            sg_str_t v = {(const char *)data + start, i - start};
            switch (k++ % 4) {
            case 0:
                if (in.n_xtid < SG_TRACE_MAX_VALUES)
                    in.xtid[in.n_xtid++] = v;
                break;
            case 1:
                if (in.n_traceparent < SG_TRACE_MAX_VALUES)
                    in.traceparent[in.n_traceparent++] = v;
                break;
            case 2:
                if (in.n_tracestate < SG_TRACE_MAX_VALUES)
                    in.tracestate[in.n_tracestate++] = v;
                break;
            default:
                if (in.n_alias < SG_TRACE_MAX_VALUES)
                    in.alias[in.n_alias++] = v;
                break;
            }
            start = i + 1;
        }
    }
    sg_trace_ctx_t ctx;
    sg_trace_resolve(&in, size % 2 == 0, &ctx);
    char check[SG_TRACE_ID_LEN + 1];
    if (sg_trace_id_parse(sg_str_make(ctx.trace_id, strlen(ctx.trace_id)), check) != 0 ||
        strcmp(check, ctx.trace_id) != 0)
        abort();
    sg_traceparent_t tp;
    if (sg_traceparent_parse(sg_str_make(ctx.traceparent, strlen(ctx.traceparent)), &tp) != 0)
        abort();
    char hex[SG_TRACE_HEX_LEN + 1];
    sg_trace_id_to_hex(ctx.trace_id, hex);
    if (strcmp(hex, tp.trace_hex) != 0)
        abort();
    if (ctx.tracestate_len && !sg_tracestate_valid(sg_str_make(ctx.tracestate, ctx.tracestate_len)))
        abort();
    /* The single-value parsers on the raw input. */
    if (sg_trace_id_parse(sg_str_make((const char *)data, size), check) == 0 && strlen(check) != SG_TRACE_ID_LEN)
        abort();
    if (sg_traceparent_parse(sg_str_make((const char *)data, size), &tp) == 0 &&
        strlen(tp.trace_hex) != SG_TRACE_HEX_LEN)
        abort();
    sg_tracestate_valid(sg_str_make((const char *)data, size));
    return 0;
}

/* A fake transport (sg_tp_vt_t) for the endpoint and stream unit tests:
 * no sockets. Bytes come in by hand (sg_fake_tp_feed, only while the
 * endpoint reads, into the memory it lends), every write is recorded, and
 * what libuv would report later (a connect's end, a half-close, a close, a
 * slow write's end) is reported by sg_fake_tp_turn(), never inside the
 * call that asked for it, as libuv does. One record per transport: the
 * first operation on an sg_tp_t makes it (sg__tp_open for an upstream
 * connection, any call for a client connection started with the fake
 * table); a record stays readable after its close until the next reset. */
#ifndef SG_TEST_FAKE_TP_H
#define SG_TEST_FAKE_TP_H

#include "net/net_int.h"

#define SG_FAKE_TP_MAX 32
#define SG_FAKE_TP_OUT 65536

typedef struct sg_fake_tp {
    sg_tp_t *tp;
    char out[SG_FAKE_TP_OUT]; /* every byte written, in order */
    size_t out_len;
    struct sockaddr_storage peer; /* what connect was given */
    int n_want_read_on;
    int n_writes;
    /* Set by the test: */
    int connect_result; /* the connect's outcome, reported on the next turn (0: connected) */
    int write_result;   /* < 0: every write fails at once with it */
    bool is_slow;       /* writes are queued; their end comes on the next turn */
    int write_end;      /* how a queued write ends (0: written; < 0: failed with it) */
    /* What happened: */
    bool is_open;
    bool has_connect;
    bool has_shutdown;
    bool has_closed; /* vt->close called */
    bool is_freed;   /* cbs->on_closed delivered */
    bool pending_connect;
    bool pending_shutdown;
    bool pending_close;
    size_t queued; /* bytes of slow writes not yet ended */
    int n_pending_writes;
    sg_tp_hold_t holds[16]; /* slow writes' holds, released when they end */
} sg_fake_tp_t;

extern const sg_tp_vt_t sg_fake_tp_vt;

/* Forgets every record (between tests). */
void sg_fake_tp_reset(void);
/* The live record of tp (made when it has none). */
sg_fake_tp_t *sg_fake_tp_of(sg_tp_t *tp);
/* The n-th record made since the reset (0 first), or NULL. */
sg_fake_tp_t *sg_fake_tp_nth(int n);
int sg_fake_tp_count(void);
/* Reports what is owed (connects, slow writes' ends, half-closes, closes)
 * to every transport; returns how many reports were made. */
int sg_fake_tp_turn(void);
/* Hands tp up to n bytes as one read would, while it reads; returns how
 * many it took (0: it does not read now). */
size_t sg_fake_tp_feed(sg_tp_t *tp, const char *p, size_t n);
/* The peer's end of the stream (UV_EOF) or a reset (UV_ECONNRESET). */
void sg_fake_tp_end(sg_tp_t *tp, int status);
/* Makes the written bytes empty again (the next exchange). */
void sg_fake_tp_clear_out(sg_fake_tp_t *f);

#endif /* SG_TEST_FAKE_TP_H */

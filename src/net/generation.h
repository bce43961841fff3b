/* Process-level config generations (generation.c): the sg_rtgen_t chain
 * behind rt->gen, for the server (server.c) and the control thread's tick
 * (worker.c). The worker-level generation (sg_wgen_t) is declared with the
 * objects in net_int.h. */
#ifndef SG_NET_GENERATION_H
#define SG_NET_GENERATION_H

#include "sg/runtime.h"

/* Main, from sg_runtime_init: publishes cfg as generation 1 (rt->gen,
 * rt->config) with rt->servers as its server slots. 0 or -ENOMEM. */
int sg__runtime_boot(sg_runtime_t *rt, sg_config_t *cfg) SG_MUST_CHECK;
/* Main, after every thread joined: frees every generation rt still holds
 * and the slot registry. */
void sg__runtime_unboot(sg_runtime_t *rt);
/* Control thread: validates cfg against the running process (a change of
 * workers or head sizes needs a restart) and builds its generation, not yet
 * published; the caller binds its listener sockets. Takes cfg's reference.
 * The generation, or NULL with a message in err (nothing changed). */
sg_rtgen_t *sg__runtime_prepare(sg_runtime_t *rt, sg_config_t *cfg, char *err, size_t errlen) SG_MUST_CHECK;
/* Control thread: interns g's metric names, publishes g (from
 * sg__runtime_prepare) as rt->gen and retires the current generation.
 * Takes g's reference. */
void sg__runtime_commit(sg_runtime_t *rt, sg_rtgen_t *g);
/* Control thread: drops rt's reference of retired generations every worker
 * has moved past (quiescent-state reclamation). */
void sg__runtime_reap(sg_runtime_t *rt);

#endif /* SG_NET_GENERATION_H */

/* Declarations private to src/obs/. */
#ifndef SG_OBS_INT_H
#define SG_OBS_INT_H

#include "sg/reqrec.h"

/* Method spelling for logs and spans ("OTHER" for SG_METHOD_OTHER). The
 * public sg_method_name() belongs to the HTTP module. Defined in log.c. */
const char *sg__obs_method_name(sg_method_t m);

#endif /* SG_OBS_INT_H */

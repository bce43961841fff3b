/* Fuzzes the config loader with arbitrary YAML bytes: it must either load a
 * config or return one error message, never crash or leak. */
#include "sg/config.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sg_config_t *cfg = NULL;
    char err[512];
    if (sg_config_load_string("fuzz.yaml", (const char *)data, size, &cfg, err, sizeof(err)) == 0) {
        if (!cfg)
            abort();
        sg_config_free(cfg);
    } else if (err[0] == '\0') {
        abort(); /* a failure always explains itself */
    }
    return 0;
}

#include "sg/reqrec.h"

static const char *const method_names[SG_METHOD__COUNT] = {
    [SG_METHOD_GET] = "GET",         [SG_METHOD_HEAD] = "HEAD",     [SG_METHOD_POST] = "POST",
    [SG_METHOD_PUT] = "PUT",         [SG_METHOD_DELETE] = "DELETE", [SG_METHOD_CONNECT] = "CONNECT",
    [SG_METHOD_OPTIONS] = "OPTIONS", [SG_METHOD_TRACE] = "TRACE",   [SG_METHOD_PATCH] = "PATCH",
    [SG_METHOD_OTHER] = "OTHER",
};

const char *sg_method_name(sg_method_t m)
{
    return (unsigned)m < SG_METHOD__COUNT ? method_names[m] : "OTHER";
}

/* Methods are case-sensitive tokens (RFC 9110 section 9.1). */
sg_method_t sg_method_from(sg_str_t name)
{
    for (int m = 0; m < SG_METHOD_OTHER; m++)
        if (sg_str_eq(name, sg_str_cstr(method_names[m])))
            return (sg_method_t)m;
    return SG_METHOD_OTHER;
}

/* Private to src/config: the YAML tree that config_yaml.c builds from libyaml
 * and config.c walks against the schema. Nothing outside src/config (and its
 * unit tests) includes this header. */
#ifndef SG_CONFIG_INT_H
#define SG_CONFIG_INT_H

#include "sg/config.h"

typedef enum sg__cnode_kind { SG__CNODE_SCALAR = 0, SG__CNODE_SEQ, SG__CNODE_MAP, SG__CNODE__COUNT } sg__cnode_kind_t;

typedef struct sg__cnode sg__cnode_t;

typedef struct sg__cpair {
    const char *key;   /* NUL-terminated scalar key */
    uint32_t key_line; /* 1-based */
    uint32_t key_col;  /* 1-based */
    sg__cnode_t *val;
} sg__cpair_t;

/* One YAML node. Lives in the loader's temporary arena. Aliases point at the
 * anchored node (shared, never copied). */
struct sg__cnode {
    sg__cnode_kind_t kind;
    uint32_t line; /* 1-based */
    uint32_t col;  /* 1-based */
    /* scalar */
    const char *str; /* NUL-terminated */
    size_t len;
    bool is_plain; /* unquoted: `null`, `~` and empty mean "no value" */
    /* sequence */
    sg__cnode_t **items;
    size_t n_items;
    /* mapping, in document order; keys are unique (duplicates are rejected) */
    sg__cpair_t *pairs;
    size_t n_pairs;
};

/* Parses one YAML document from buf into a tree allocated from `a`.
 * An empty document gives *root = NULL. Returns 0, or -1 with
 * "name:line:col: keypath: message" in err (syntax errors, duplicate keys,
 * non-scalar keys, several documents, nesting or alias blow-up). */
int sg__config_yaml_parse(sg_arena_t *a, const char *name, const char *buf, size_t len, sg__cnode_t **root, char *err,
                          size_t errlen) SG_MUST_CHECK;

/* True for a plain `null`, `~`, `Null`, `NULL` or empty scalar. */
bool sg__cnode_is_null(const sg__cnode_t *n);

/* Mapping lookup; NULL when `m` is not a mapping or has no such key. */
const sg__cpair_t *sg__cnode_get(const sg__cnode_t *m, const char *key);

/* Parsers with a reason for the error message (the public ones wrap these). */
#define SG__HOSTPORT_F_PORT0 0x1u   /* port 0 allowed (ephemeral bind) */
#define SG__HOSTPORT_F_IP_ONLY 0x2u /* host must be an IP literal */
int sg__parse_hostport(sg_arena_t *a, const char *s, unsigned flags, sg_hostport_t *out,
                       const char **why) SG_MUST_CHECK;

/* RFC 1123 host name (labels of letters, digits, '-', '_'; 1..253 bytes). */
bool sg__is_hostname(const char *s, size_t len);

/* Key paths for error messages ("routes[2].upstream"): append ".key" (or
 * "key" at the root) or "[i]" to path (cap bytes, *len used); return the
 * old length for sg__path_pop. Overlong paths are cut, never overflowed. */
size_t sg__path_push_key(char *path, size_t cap, size_t *len, const char *key);
size_t sg__path_push_idx(char *path, size_t cap, size_t *len, size_t i);
void sg__path_pop(char *path, size_t *len, size_t old);

#endif /* SG_CONFIG_INT_H */

/* libyaml to the config tree (config_int.h). The only file that includes
 * yaml.h. It uses the document API, which keeps a start mark per node, and
 * copies the document into the loader's arena so config.c never sees libyaml.
 *
 * Guards: duplicate mapping keys are errors (YAML 1.2 says keys are unique,
 * libyaml does not check); nesting deeper than MAX_DEPTH and trees larger than
 * MAX_NODES are refused, which also stops recursive aliases and alias
 * "billion laughs" expansion, since aliases are expanded while copying. */
#include "config/config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_NODES 200000
#define MAX_PATH 512

typedef struct conv {
    sg_arena_t *a;
    const char *name;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    size_t n_nodes;
    char path[MAX_PATH];
    size_t plen;
} conv_t;

static int conv_fail(conv_t *c, size_t line, size_t col, const char *fmt, ...) SG_PRINTF(4, 5);
static int conv_fail(conv_t *c, size_t line, size_t col, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%zu:%zu: %s: %s", c->name, line, col, c->plen ? c->path : "(root)", msg);
    return -1;
}

/* Appends ".key" (or "key" at the root) or "[i]" to the path; returns the old
 * length for path_pop(). Overlong paths are cut, never overflowed. */
static size_t path_push_key(conv_t *c, const char *key)
{
    return sg__path_push_key(c->path, sizeof(c->path), &c->plen, key);
}

static size_t path_push_idx(conv_t *c, size_t i)
{
    return sg__path_push_idx(c->path, sizeof(c->path), &c->plen, i);
}

static void path_pop(conv_t *c, size_t old)
{
    sg__path_pop(c->path, &c->plen, old);
}

static int convert(conv_t *c, yaml_node_t *yn, int depth, sg__cnode_t **out);

static int convert_scalar(conv_t *c, yaml_node_t *yn, sg__cnode_t *n)
{
    size_t len = yn->data.scalar.length;
    const char *v = (const char *)yn->data.scalar.value;
    if (memchr(v, '\0', len))
        return conv_fail(c, yn->start_mark.line + 1, yn->start_mark.column + 1, "NUL character in a value");
    n->str = sg_arena_strndup(c->a, v, len);
    if (!n->str)
        return conv_fail(c, 0, 0, "out of memory");
    n->len = len;
    n->is_plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return 0;
}

static int convert_seq(conv_t *c, yaml_node_t *yn, int depth, sg__cnode_t *n)
{
    size_t cnt = (size_t)(yn->data.sequence.items.top - yn->data.sequence.items.start);
    n->items = cnt ? sg_arena_zalloc(c->a, cnt * sizeof(*n->items)) : NULL;
    if (cnt && !n->items)
        return conv_fail(c, 0, 0, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *child = yaml_document_get_node(c->doc, yn->data.sequence.items.start[i]);
        size_t old = path_push_idx(c, i);
        if (convert(c, child, depth + 1, &n->items[i]) < 0)
            return -1;
        path_pop(c, old);
    }
    n->n_items = cnt;
    return 0;
}

static int convert_map(conv_t *c, yaml_node_t *yn, int depth, sg__cnode_t *n)
{
    size_t cnt = (size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
    n->pairs = cnt ? sg_arena_zalloc(c->a, cnt * sizeof(*n->pairs)) : NULL;
    if (cnt && !n->pairs)
        return conv_fail(c, 0, 0, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *yp = &yn->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(c->doc, yp->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, yp->value);
        size_t kl = k->start_mark.line + 1, kc = k->start_mark.column + 1;
        if (k->type != YAML_SCALAR_NODE)
            return conv_fail(c, kl, kc, "a mapping key must be a plain string");
        const char *ks = (const char *)k->data.scalar.value;
        if (memchr(ks, '\0', k->data.scalar.length))
            return conv_fail(c, kl, kc, "NUL character in a key");
        size_t old = path_push_key(c, ks);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(n->pairs[j].key, ks) == 0)
                return conv_fail(c, kl, kc, "duplicate key (first given at line %u, column %u)", n->pairs[j].key_line,
                                 n->pairs[j].key_col);
        }
        sg__cpair_t *p = &n->pairs[i];
        p->key = sg_arena_strdup(c->a, ks);
        if (!p->key)
            return conv_fail(c, kl, kc, "out of memory");
        p->key_line = (uint32_t)kl;
        p->key_col = (uint32_t)kc;
        n->n_pairs = i + 1;
        if (convert(c, v, depth + 1, &p->val) < 0)
            return -1;
        path_pop(c, old);
    }
    n->n_pairs = cnt;
    return 0;
}

static int convert(conv_t *c, yaml_node_t *yn, int depth, sg__cnode_t **out)
{
    size_t line = yn->start_mark.line + 1, col = yn->start_mark.column + 1;
    if (depth > MAX_DEPTH)
        return conv_fail(c, line, col, "nesting deeper than %d levels (recursive alias?)", MAX_DEPTH);
    if (++c->n_nodes > MAX_NODES)
        return conv_fail(c, line, col, "document too large (more than %d nodes after alias expansion)", MAX_NODES);
    sg__cnode_t *n = sg_arena_zalloc(c->a, sizeof(*n));
    if (!n)
        return conv_fail(c, line, col, "out of memory");
    n->line = (uint32_t)line;
    n->col = (uint32_t)col;
    *out = n;
    switch (yn->type) {
    case YAML_SCALAR_NODE:
        n->kind = SG__CNODE_SCALAR;
        return convert_scalar(c, yn, n);
    case YAML_SEQUENCE_NODE:
        n->kind = SG__CNODE_SEQ;
        return convert_seq(c, yn, depth, n);
    case YAML_MAPPING_NODE:
        n->kind = SG__CNODE_MAP;
        return convert_map(c, yn, depth, n);
    case YAML_NO_NODE:
    default:
        return conv_fail(c, line, col, "unexpected empty node");
    }
}

static int parser_fail(conv_t *c, yaml_parser_t *p)
{
    size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_MEMORY_ERROR)
        problem = "out of memory";
    if (p->context)
        snprintf(c->err, c->errlen, "%s:%zu:%zu: (syntax): %s %s at line %zu, column %zu", c->name, line, col, problem,
                 p->context, p->context_mark.line + 1, p->context_mark.column + 1);
    else
        snprintf(c->err, c->errlen, "%s:%zu:%zu: (syntax): %s", c->name, line, col, problem);
    return -1;
}

int sg__config_yaml_parse(sg_arena_t *a, const char *name, const char *buf, size_t len, sg__cnode_t **root, char *err,
                          size_t errlen)
{
    conv_t c = {.a = a, .name = name, .err = err, .errlen = errlen};
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int rc = -1;

    *root = NULL;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s:1:1: (syntax): out of memory", name);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        parser_fail(&c, &parser);
        goto fail_parser;
    }
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    if (top) {
        /* A second document would be silently ignored by a naive loader. */
        if (!yaml_parser_load(&parser, &extra)) {
            parser_fail(&c, &parser);
            goto fail_doc;
        }
        yaml_node_t *second = yaml_document_get_root_node(&extra);
        if (second) {
            conv_fail(&c, extra.start_mark.line + 1, extra.start_mark.column + 1,
                      "only one YAML document is allowed in a config file");
            yaml_document_delete(&extra);
            goto fail_doc;
        }
        yaml_document_delete(&extra);
        c.doc = &doc;
        if (convert(&c, top, 0, root) < 0) {
            *root = NULL;
            goto fail_doc;
        }
    }
    rc = 0;
fail_doc:
    yaml_document_delete(&doc);
fail_parser:
    yaml_parser_delete(&parser);
    return rc;
}

bool sg__cnode_is_null(const sg__cnode_t *n)
{
    if (!n)
        return true;
    if (n->kind != SG__CNODE_SCALAR || !n->is_plain)
        return false;
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 || strcmp(n->str, "Null") == 0 ||
           strcmp(n->str, "NULL") == 0;
}

const sg__cpair_t *sg__cnode_get(const sg__cnode_t *m, const char *key)
{
    if (!m || m->kind != SG__CNODE_MAP)
        return NULL;
    for (size_t i = 0; i < m->n_pairs; i++)
        if (strcmp(m->pairs[i].key, key) == 0)
            return &m->pairs[i];
    return NULL;
}

#!/usr/bin/env python3
"""make layer-check: includes and calls point only downward, and no files call each other in a cycle.

Reads tools/layers.map (the layers, lowest first, and which layer each file
is in), then checks three graphs of src/ and include/sg/:

  include  every `#include "..."` edge between the project's files;
  call     file A -> file B when A's object file (the Debug build's, see
           --objdir) has an undefined symbol that B's object file defines
           (nm): calls and references to data. Function pointers are
           invisible to nm, which is the point: news travels up through
           callback tables, calls go down;
  proto    a function declared without a body at file scope of a .c file
           in src/ (it belongs in a header, declared once).

A violation is an include or call edge that points to a higher layer, an
edge between two files that reach each other (a cycle: the cycle path is
printed), or a proto. Each must be listed in tools/layers.allow, and each
entry of that file must still be a violation (a stale entry fails too), so
the list only shrinks. Exit 0 when both hold, 1 otherwise, 2 on a usage or
setup error (no objects: run make build-debug first).
"""

import argparse
import collections
import fnmatch
import os
import re
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def die(msg):
    print("layer-check: " + msg, file=sys.stderr)
    sys.exit(2)


def read_map(path):
    """Returns (layers in order, [(pattern, layer, line)])."""
    layers, rules = [], []
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].split()
            if not line:
                continue
            if line[0] == "layer" and len(line) == 2:
                if line[1] in layers:
                    die(f"{path}:{n}: layer {line[1]} declared twice")
                layers.append(line[1])
            elif len(line) == 2:
                if line[1] not in layers:
                    die(f"{path}:{n}: layer {line[1]} is not declared above its first use")
                rules.append((line[0], line[1], n))
            else:
                die(f"{path}:{n}: expected `layer NAME` or `PATTERN LAYER`")
    return layers, rules


def project_files():
    out = []
    for top, exts in (("src", (".c", ".h")), ("include/sg", (".h",))):
        for d, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if name.endswith(exts):
                    out.append(os.path.relpath(os.path.join(d, name), ROOT))
    return sorted(out)


def strip_comments(text):
    """C comments out, line count kept (so line numbers still hold)."""
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def include_edges(files):
    known = set(files)
    edges = collections.defaultdict(set)
    errors = []
    for f in files:
        with open(os.path.join(ROOT, f)) as fh:
            text = strip_comments(fh.read())
        for m in INCLUDE_RE.finditer(text):
            inc = m.group(1)
            cands = [os.path.normpath(os.path.join(base, inc)) for base in ("include", "src", os.path.dirname(f))]
            hit = next((c for c in cands if c in known), None)
            if hit is None:
                line = text.count("\n", 0, m.start()) + 1
                errors.append(f'{f}:{line}: #include "{inc}" is not a file of src/ or include/sg/')
            elif hit != f:
                edges[f].add(hit)
    return edges, errors


def call_edges(objdirs, files):
    """file -> {file: [symbols]} from nm of the objects under objdirs."""
    objs = {}
    for objdir in objdirs:
        for d, _, names in os.walk(objdir):
            for name in names:
                if not name.endswith(".c.o"):
                    continue
                path = os.path.join(d, name)
                src = os.path.relpath(path, objdir)[: -len(".o")]
                if src in files:  # an object whose source is gone (renamed) is stale: skip it
                    objs[path] = src
    if not objs:
        die(f"no object files under {', '.join(objdirs)}: run make build-debug first")
    res = subprocess.run(["nm", "-A", "-g"] + sorted(objs), capture_output=True, text=True)
    if res.returncode != 0:
        die("nm failed: " + res.stderr.strip())
    defs, undefs = {}, collections.defaultdict(set)
    for line in res.stdout.splitlines():
        head, _, rest = line.partition(".o:")
        parts = rest.split()
        if len(parts) < 2:
            continue
        kind, sym = parts[-2], parts[-1]
        src = objs.get(head + ".o")
        if src is None:
            continue
        if kind in ("U", "w"):
            undefs[src].add(sym)
        else:
            defs.setdefault(sym, src)
    edges = collections.defaultdict(lambda: collections.defaultdict(list))
    for src, syms in undefs.items():
        for sym in sorted(syms):
            to = defs.get(sym)
            if to and to != src:
                edges[src][to].append(sym)
    return edges, len(objs)


def prototypes(files):
    """(file, line, name) of each function declared without a body at file scope of a .c."""
    out = []
    for f in files:
        if not (f.startswith("src/") and f.endswith(".c")):
            continue
        with open(os.path.join(ROOT, f)) as fh:
            text = strip_comments(fh.read())
        text = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M)
        depth, start, line, stmt = 0, 1, 1, []
        for ch in text:
            if ch == "\n":
                line += 1
            if depth:
                depth += {"{": 1, "}": -1}.get(ch, 0)
                continue
            if ch == "{":
                depth, stmt = 1, []
            elif ch == ";":
                s = " ".join("".join(stmt).split())
                stmt = []
                m = re.match(r"(?:extern\s+)?[A-Za-z_][\w\s\*]*?\b(\w+)\s*\((.*)\)\s*(?:SG_\w+\s*)*$", s, re.S)
                if m and not re.match(r"(static|typedef|_Static_assert)\b", s) and "=" not in s.split("(")[0]:
                    out.append((f, start, m.group(1)))
            elif stmt or not ch.isspace():
                if not stmt:
                    start = line
                stmt.append(ch)
    return out


def sccs(nodes, edges):
    """Tarjan's strongly connected components (iterative). Returns node -> component id."""
    index, low, comp, stack, on = {}, {}, {}, [], set()
    counter = [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp[w] = v
                        if w == v:
                            break
    return comp


def shortest_path(edges, src, dst, allowed):
    prev, queue, seen = {}, collections.deque([src]), {src}
    while queue:
        v = queue.popleft()
        if v == dst:
            path = [v]
            while path[-1] != src:
                path.append(prev[path[-1]])
            return path[::-1]
        for w in sorted(edges.get(v, ())):
            if w in allowed and w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    return None


def check_graph(kind, edges, layer_of, rank, order, detail=None):
    """Violations of one graph: {"kind A -> B": [reasons]}; order[key] sorts
    the report: upward edges first, then each cycle's edges together,
    shortest cycle first (the two files of a two-file cycle lead)."""
    nodes = set(edges) | {b for a in edges for b in edges[a]}
    comp = sccs(nodes, edges)
    members = collections.defaultdict(set)
    for v, c in comp.items():
        members[c].add(v)
    out = {}
    for a in sorted(edges):
        for b in sorted(edges[a]):
            reasons, key = [], (0, "", 0)
            if rank[layer_of[b]] > rank[layer_of[a]]:
                reasons.append(f"upward: {layer_of[a]} -> {layer_of[b]}")
            if comp[a] == comp[b]:
                back = shortest_path(edges, b, a, members[comp[a]])
                reasons.append(f"cycle of {len(back)} files: " + " -> ".join([a] + back))
                key = (1, comp[a], len(back))
            if reasons:
                if detail:
                    reasons.append(detail(a, b))
                out[f"{kind} {a} -> {b}"] = reasons
                order[f"{kind} {a} -> {b}"] = key
    return out


def read_allow(path):
    allow = {}
    if not os.path.exists(path):
        return allow
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = " ".join(raw.split("#", 1)[0].split())
            if line:
                allow[line] = n
    return allow


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default=os.path.join(ROOT, "tools/layers.map"))
    ap.add_argument("--allow", default=os.path.join(ROOT, "tools/layers.allow"))
    ap.add_argument(
        "--objdir",
        action="append",
        help="CMake object directory (default: build/debug/CMakeFiles/{sgcore,swarmgate}.dir); repeatable",
    )
    ap.add_argument("--no-calls", action="store_true", help="skip the call graph (no build needed)")
    ap.add_argument("--graph", action="store_true", help="print every edge with its layers, then check")
    args = ap.parse_args()
    args.map, args.allow = os.path.abspath(args.map), os.path.abspath(args.allow)
    if args.objdir:
        args.objdir = [os.path.abspath(d) for d in args.objdir]

    os.chdir(ROOT)
    layers, rules = read_map(args.map)
    rank = {name: i for i, name in enumerate(layers)}
    files = project_files()
    problems = []
    layer_of, used = {}, set()
    for f in files:
        for pat, layer, n in rules:
            if fnmatch.fnmatchcase(f, pat):
                layer_of[f] = layer
                used.add(n)
                break
        else:
            problems.append(f"{f}: in no layer: add it to {os.path.relpath(args.map)}")
    for pat, _, n in rules:
        if n not in used:
            problems.append(f"{os.path.relpath(args.map)}:{n}: `{pat}` matches no file (renamed? update the map)")
    if problems:
        print("\n".join(problems))
        return 1

    inc, errors = include_edges(files)
    if errors:
        print("\n".join(errors))
        return 1
    order = {}
    violations = check_graph("include", inc, layer_of, rank, order)
    n_calls = n_objs = 0
    calls = {}
    if not args.no_calls:
        objdirs = args.objdir or [
            os.path.join(ROOT, "build/debug/CMakeFiles/sgcore.dir"),
            os.path.join(ROOT, "build/debug/CMakeFiles/swarmgate.dir"),
        ]
        calls, n_objs = call_edges([d for d in objdirs if os.path.isdir(d)] or objdirs, set(files))
        n_calls = sum(len(v) for v in calls.values())

        def syms(a, b):
            s = calls[a][b]
            return "symbols: " + ", ".join(s[:6]) + (f" (+{len(s) - 6})" if len(s) > 6 else "")

        violations.update(check_graph("call", calls, layer_of, rank, order, syms))
    for f, line, name in prototypes(files):
        violations[f"proto {f} {name}"] = [f"{f}:{line}: declared in a .c file: declare it once, in a header"]

    if args.graph:
        for kind, g in (("include", inc), ("call", calls)):
            for a in sorted(g):
                for b in sorted(g[a]):
                    print(f"{kind} {a} ({layer_of[a]}) -> {b} ({layer_of[b]})")

    allow = read_allow(args.allow)
    if args.no_calls:
        allow = {k: v for k, v in allow.items() if not k.startswith("call ")}
    new = [k for k in violations if k not in allow]
    stale = sorted((n, k) for k, n in allow.items() if k not in violations)
    rel_allow = os.path.relpath(args.allow)
    for k in sorted(new, key=lambda k: (order.get(k, (2, "", 0)), k)):
        print(f"layer-check: {k}")
        for r in violations[k]:
            print(f"    {r}")
    for n, k in stale:
        print(f"layer-check: {rel_allow}:{n}: `{k}` no longer happens: delete the line")
    summary = (
        f"{len(files)} files in {len(layers)} layers, {sum(len(v) for v in inc.values())} include edges, "
        f"{n_calls} call edges ({n_objs} objects), {len(allow) - len(stale)} known violations in {rel_allow}"
    )
    if new or stale:
        print(
            f"layer-check: FAILED: {len(new)} new violation(s), {len(stale)} stale allow entry(s) ({summary}). "
            f"Includes and calls go to the same or a lower layer of {os.path.relpath(args.map)}; news goes up "
            "through callback tables."
        )
        return 1
    print(f"layer-check: ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

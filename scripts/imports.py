#!/usr/bin/env python3
"""The import graph of `src/`: which top-level module uses which, its layers, cycles and the
imports that point upward.

Usage: python3 scripts/imports.py [--depth N] [--edges]

A node is a module path under `src/` cut to --depth segments (default: every file is a node;
1 gives the top-level capabilities `videos`, `render`, ...). An edge A -> B is any `crate::B...` path written in A's files
(`use` lines and inline paths alike; `super::` resolved). Layers: the graph's strongly connected
components, condensed, ordered so that a module sits above everything it imports (layer 0
imports nothing else). The "declared" order is the list LAYERS below (low to high); an upward
import is an edge from a module to one declared above it. Only the standard library is used.
"""

import os
import re
import sys
from collections import defaultdict

# Lowest first: a module may import those listed before it. Modules not listed are reported.
LAYERS = [
    "render",
    "platform",
    "videos",
    "sessions",
    "ops",
    "context",
    "api",
    "cli",
    "lib",
    "main",
]

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)::\{([^;]*?)\}", re.S)


def module_of(rel):
    """`videos/lifecycle.rs` -> ['videos', 'lifecycle']; `render/mod.rs` -> ['render']."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts == ["lib"] or parts == ["main"]:
        return parts
    return parts


def resolve(module, kind, rest, is_mod_file):
    """The absolute module path a `crate::`/`super::` path names."""
    segs = [s for s in rest.split("::") if s]
    if kind == "crate":
        return segs
    # `super` in foo/bar.rs is foo; in foo/mod.rs it is foo's parent.
    base = module[:-1] if not is_mod_file else module[:-1]
    while segs and segs[0] == "super":
        base = base[:-1]
        segs = segs[1:]
    return base + segs


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def main():
    depth = 99
    args = sys.argv[1:]
    if "--depth" in args:
        depth = int(args[args.index("--depth") + 1])
    show_edges = "--edges" in args
    modules = set()
    edges = defaultdict(set)
    files = []
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                files.append(os.path.relpath(os.path.join(dirpath, name), ROOT))
    known = set()
    for rel in files:
        known.add(tuple(module_of(rel)))
    for rel in sorted(files):
        module = module_of(rel)
        node = "::".join(module[:depth])
        modules.add(node)
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            text = strip_comments(f.read())
        is_mod_file = rel.endswith("mod.rs")
        targets = []
        for m in GROUP.finditer(text):
            for item in re.split(r",", m.group(2)):
                item = item.strip().split(" as ")[0].strip()
                item = re.sub(r"\{.*", "", item).strip(":")
                if item and item != "self":
                    targets.append((m.group(1), "::" + item))
        for m in PATH.finditer(text):
            targets.append((m.group(1), m.group(2)))
        if module == ["lib"]:
            # The crate root names its modules without `crate::`.
            for m in re.finditer(r"\buse\s+([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)*)", text):
                if (m.group(1),) in known:
                    targets.append(("crate", "::" + m.group(1) + m.group(2)))
            for m in re.finditer(r"\b([a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
                if (m.group(1),) in known:
                    targets.append(("crate", "::" + m.group(1) + m.group(2)))
        for kind, rest in targets:
            path = resolve(module, kind, rest, is_mod_file)
            # Cut to the longest prefix that is a module file.
            while path and tuple(path) not in known:
                path = path[:-1]
            if not path:
                continue
            target = "::".join(path[:depth])
            if target != node:
                edges[node].add(target)
                modules.add(target)

    # Strongly connected components (Tarjan).
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            strong(v)
    comp_of = {v: i for i, c in enumerate(comps) for v in c}
    layer = {}

    def layer_of(c):
        if c in layer:
            return layer[c]
        layer[c] = 0
        deps = {comp_of[w] for v in comps[c] for w in edges[v]} - {c}
        layer[c] = 1 + max((layer_of(d) for d in deps), default=-1)
        return layer[c]

    for c in range(len(comps)):
        layer_of(c)
    cycles = [c for c in comps if len(c) > 1]

    def declared(m):
        top = m.split("::")[0]
        return LAYERS.index(top) if top in LAYERS else None

    upward = sorted(
        (a, b)
        for a in edges
        for b in edges[a]
        if declared(a) is not None
        and declared(b) is not None
        and declared(b) > declared(a)
    )
    undeclared = sorted(m for m in modules if declared(m) is None)
    n_edges = sum(len(v) for v in edges.values())
    print(f"modules: {len(modules)}  imports between them: {n_edges}")
    print(f"layers (longest import chain): {1 + max(layer.values(), default=-1)}")
    print(f"cycles: {len(cycles)}")
    for c in cycles:
        print("  cycle:", " <-> ".join(c))
    print(f"upward imports (against LAYERS): {len(upward)}")
    for a, b in upward:
        print(f"  {a} -> {b}")
    if undeclared:
        print("not in LAYERS:", ", ".join(undeclared))
    if show_edges:
        for a in sorted(edges):
            print(f"{a} -> {', '.join(sorted(edges[a]))}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fail when the modules of a crate import each other in a circle.

Each crate's code should flow one way: every module uses only modules below it. This
script reads every `.rs` file under `<crate>/src`, builds the graph "file A uses something
defined in file B", and reports every strongly connected component of more than one file:
a set of files that, through their imports, all depend on each other. Each crate gets its own verdict; the exit status is 1 when any crate has a
circle, 0 otherwise.

    python3 .ci/check_layers.py                  # node, router, shared, loadtest
    python3 .ci/check_layers.py router/src       # only these source trees
    python3 .ci/check_layers.py --self-test      # checks the checker on made-up trees

Python 3 standard library only. It reads source text, it does not compile it, so it
follows these rules (each chosen to be simple and to err towards reporting):

- Files and modules. The module tree is found from the crate roots (`lib.rs`, `main.rs`,
  `bin/*.rs`) by following `mod x;` declarations (`x.rs` or `x/mod.rs`, next to a root or
  `mod.rs`, else in the folder named after the file). `#[path]` attributes are not
  supported. A `.rs` file no root declares is not compiled, and is skipped with a note.
  `main.rs` is its own crate: its `crate::` means its own modules, and its uses of the
  library (`herald_router::...`) are another crate's, so they are no edge.
- What counts as a use. Every path that starts with `crate::`, `self::` or `super::`, or
  (uniform paths) with the name of a child module declared in the same scope: in `use`
  statements (grouped `use a::{b, c::{d, e as f}}` forms, several lines long, `pub use`,
  `pub(crate) use`) and in code (`crate::a::b()`, `child::f()`). Test modules count too:
  a circle through a test is still a circle the compiler has to build. Paths from other
  crates (`std::`, `::metrics::`, `$crate::` in macros) are no edge. Comments and string
  literals are ignored, so doc links (`[crate::a]`) make no edge.
- Where a path points. `crate::a::b::C` names the deepest module that exists: `a/b.rs`
  (or `a/b/mod.rs`) when `b` is a module, else `a.rs`/`a/mod.rs` with `b` an item in it.
  An item a module re-exports (`pub use load::check;` in `config/mod.rs`, or any other
  `use` binding the name there) is followed through that binding to the file that defines
  it, so `use crate::config::check` depends on `config/load.rs`, not on the facade. The
  same goes for `lib.rs`: `crate::X` re-exported at the top resolves to where X lives.
  A name defined in neither place is looked up through the module's glob re-exports
  (`pub use x::*`).
- Facades are not dependents. A `pub use` in a module of its own descendants (a `mod.rs`
  or `lib.rs` re-exporting its children's items) only exposes them: it is no edge from
  the facade, because importers resolve through it as above. Any other use in a facade is
  an ordinary edge: if `config/mod.rs` calls `load::read()` while `config/load.rs` uses
  types from `config/mod.rs`, that is a circle and is reported.
- Imports from a file to its own parent module (`use super::Thing` in `config/load.rs`)
  are ordinary edges, and so are uses of items defined in `lib.rs` (roots are not
  exempt: a module that reaches up into `lib.rs` while `lib.rs` uses it is a circle).
- A file's uses of itself (its own inline `mod tests`, `use self::...`) are no edge.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field

DEFAULT_TREES = ["node/src", "router/src", "shared/src", "loadtest/src"]

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
KEYWORD_PATH_START = ("crate", "self", "super")


# -- reading source ------------------------------------------------------------------


def strip_comments_and_strings(text: str) -> str:
    """Blanks out comments, string and char literals, keeping every newline in place."""
    out = []
    i, n = 0, len(text)

    def blank(s: str) -> str:
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c in "br" and re.match(r'b?r#*"', text[i:]) and not re.match(r"\w", text[i - 1 : i] or " "):
            m = re.match(r'b?r(#*)"', text[i:])  # raw strings, byte ones included
            hashes = m.group(1)
            end = text.find('"' + hashes, i + len(m.group(0)))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(blank(text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), or a lifetime ('a), which stays.
            m = re.match(r"'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'])'", text[i:])
            if m:
                out.append(blank(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass
class UseEntry:
    """One path a `use` statement brings in."""

    segments: list[str]  # e.g. ["crate", "a", "b", "C"]; "self" at the end: the module
    alias: str | None  # `as name`
    glob: bool  # `::*`


def parse_use_tree(tree: str) -> list[UseEntry]:
    """Flattens `a::{b, c::{self, d as e}, f::*}` into one entry per leaf."""
    tokens = re.findall(r"::|[{}*,]|" + IDENT, tree)
    pos = 0

    def parse(prefix: list[str]) -> list[UseEntry]:
        nonlocal pos
        segs = list(prefix)
        entries: list[UseEntry] = []
        while pos < len(tokens):
            t = tokens[pos]
            if t == "::":
                pos += 1
            elif t == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    if tokens[pos] == ",":
                        pos += 1
                        continue
                    entries.extend(parse(segs))
                pos += 1  # the closing brace
                return entries
            elif t == "*":
                pos += 1
                entries.append(UseEntry(segs, None, True))
                return entries
            elif t in (",", "}"):
                break
            elif t == "as":
                pos += 1
                alias = tokens[pos] if pos < len(tokens) else None
                pos += 1
                entries.append(UseEntry(segs, alias, False))
                return entries
            else:
                segs = segs + [t]
                pos += 1
        if segs != prefix or not entries:
            if segs:
                entries.append(UseEntry(segs, None, False))
        return entries

    return parse([])


@dataclass
class UseStmt:
    """A `use` statement, or a path written in code (`inline`)."""

    line: int
    scope: tuple[str, ...]  # absolute module path of the scope it is written in
    public: bool
    entries: list[UseEntry]
    inline: bool = False


@dataclass
class SourceFile:
    path: str  # relative to the source tree, e.g. "config/mod.rs"
    text: str
    uses: list[UseStmt] = field(default_factory=list)
    # child modules declared by `mod x;` (file) or `mod x { }` (inline), by scope
    mod_decls: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    file_mods: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    inline_mods: list[tuple[str, ...]] = field(default_factory=list)  # absolute paths
    clean: str = ""  # the text without comments and literals
    modpath: tuple[str, ...] = ()
    root: str = ""


TOKEN_RE = re.compile(
    r"(?P<mod>\bmod\s+(?P<modname>" + IDENT + r")\s*(?P<modend>[{;]))"
    r"|(?P<use>(?P<vis>\bpub\s*(\(\s*(crate|super|self|in\s+[^)]*)\s*\))?\s+)?\buse\s+(?P<tree>[^;]*);)"
    r"|(?P<open>\{)|(?P<close>\})"
    r"|(?P<path>(?<![\w:$])(?P<head>" + IDENT + r")(\s*::\s*(" + IDENT + r"|\{|\*))+)"
)


def scan(sf: SourceFile) -> None:
    """Finds `mod` declarations, `use` statements and inline paths, each with its scope."""
    clean = sf.clean = strip_comments_and_strings(sf.text)
    # Visibility paths (`pub(in crate::a)`) name no dependency.
    clean = re.sub(r"\bpub\s*\(\s*in\s+[^)]*\)", lambda m: " " * len(m.group(0)), clean)
    scope: list[tuple[str, int]] = []  # inline modules: (name, brace depth inside)
    depth = 0
    for m in TOKEN_RE.finditer(clean):
        line = clean.count("\n", 0, m.start()) + 1
        here = sf.modpath + tuple(name for name, _ in scope)
        if m.group("mod"):
            name = m.group("modname")
            sf.mod_decls.setdefault(here, set()).add(name)
            if m.group("modend") == "{":
                depth += 1
                scope.append((name, depth))
                sf.inline_mods.append(here + (name,))
            else:
                sf.file_mods.append((tuple(n for n, _ in scope), name))
        elif m.group("use"):
            entries = parse_use_tree(m.group("tree"))
            sf.uses.append(UseStmt(line, here, bool(m.group("vis")), entries))
        elif m.group("open"):
            depth += 1
        elif m.group("close"):
            if scope and scope[-1][1] == depth:
                scope.pop()
            depth -= 1
        elif m.group("path"):
            text = m.group("path")
            segs = [s for s in re.split(r"\s*::\s*", text) if s]
            sf.uses.append(UseStmt(line, here, False, [UseEntry(segs, None, False)], inline=True))


# -- the module tree -----------------------------------------------------------------


@dataclass
class Crate:
    """One crate root's modules: absolute module path -> file, inline ones included."""

    root: str
    modules: dict[tuple[str, ...], SourceFile] = field(default_factory=dict)


def child_file(tree: str, parent: SourceFile, inline: tuple[str, ...], name: str) -> str | None:
    """Where `mod name;` declared in `parent` (inside inline modules `inline`) lives."""
    base = os.path.dirname(parent.path)
    if parent.path != parent.root and os.path.basename(parent.path) != "mod.rs":
        # `a/b.rs` keeps its children in `a/b/`; roots and `mod.rs` in their own folder.
        base = os.path.join(base, os.path.splitext(os.path.basename(parent.path))[0])
    base = os.path.join(base, *inline)
    for candidate in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        candidate = os.path.normpath(candidate)
        if os.path.isfile(os.path.join(tree, candidate)):
            return candidate
    return None


def load_tree(tree: str) -> tuple[list[Crate], list[str]]:
    """Reads every `.rs` file under `tree` and builds the module tree of each root."""
    files: dict[str, SourceFile] = {}
    for dirpath, _, names in os.walk(tree):
        for name in names:
            if name.endswith(".rs"):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, tree)
                with open(full, encoding="utf-8") as f:
                    files[rel] = SourceFile(rel, f.read())
    roots = [r for r in ("lib.rs", "main.rs") if r in files]
    roots += sorted(p for p in files if p.startswith("bin" + os.sep) and p.count(os.sep) == 1)
    crates = []
    reached: set[str] = set()
    for root in roots:
        crate = Crate(root)
        todo = [(root, ())]
        while todo:
            rel, modpath = todo.pop()
            if rel in reached and rel != root:
                continue
            reached.add(rel)
            sf = files[rel]
            sf.modpath, sf.root = modpath, root
            sf.uses, sf.mod_decls, sf.file_mods, sf.inline_mods = [], {}, [], []
            scan(sf)
            crate.modules[modpath] = sf
            for scope in sf.inline_mods:
                crate.modules.setdefault(scope, sf)
            for inline, name in sf.file_mods:
                child = child_file(tree, sf, inline, name)
                if child is not None:
                    todo.append((child, modpath + inline + (name,)))
        crates.append(crate)
    skipped = sorted(p for p in files if p not in reached)
    return crates, skipped


# -- resolving paths -----------------------------------------------------------------

ITEM_RE = r"\b(fn|struct|enum|trait|type|const|static|union|mod|macro_rules!)\s+{}\b"


def defines(sf: SourceFile, name: str) -> bool:
    return re.search(ITEM_RE.format(re.escape(name)), sf.clean) is not None


def absolute(stmt: UseStmt, segs: list[str], crate: Crate) -> list[str] | None:
    """Turns a written path into one from the crate root, or None for another crate's."""
    if not segs:
        return None
    head = segs[0]
    if head == "crate":
        return segs[1:]
    if head == "self":
        return list(stmt.scope) + segs[1:]
    if head == "super":
        base = list(stmt.scope)
        rest = list(segs)
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
        if rest and rest[0] == "self":
            rest = rest[1:]
        return base + rest
    sf = crate.modules.get(stmt.scope)
    if sf is not None and head in sf.mod_decls.get(stmt.scope, set()):
        return list(stmt.scope) + segs
    return None


def bindings(sf: SourceFile, scope: tuple[str, ...], crate: Crate):
    """The names `use` statements bind in `scope`: name -> absolute path, plus globs."""
    named: dict[str, list[str] | None] = {}
    globs: list[list[str]] = []
    for stmt in sf.uses:
        if stmt.inline or stmt.scope != scope:
            continue
        for e in stmt.entries:
            segs = list(e.segments)
            if segs and segs[-1] == "self":
                segs = segs[:-1]
            path = absolute(stmt, segs, crate)
            if e.glob:
                if path is not None:
                    globs.append(path)
                continue
            if not segs:
                continue
            named[e.alias or segs[-1]] = path
    return named, globs


def resolve(path: list[str], crate: Crate, depth: int = 0) -> SourceFile | None:
    """The file that defines what `path` (from the crate root) names."""
    if depth > 20:
        return None
    n = len(path)
    while n > 0 and tuple(path[:n]) not in crate.modules:
        n -= 1
    module = tuple(path[:n])
    sf = crate.modules.get(module)
    if sf is None:
        return None
    rest = path[n:]
    if not rest:
        return sf
    name = rest[0]
    named, globs = bindings(sf, module, crate)
    if name in named:
        target = named[name]
        if target is None:  # another crate's item, re-exported here
            return sf
        if target != path[: n + 1]:
            found = resolve(target + rest[1:], crate, depth + 1)
            return found or sf
    if defines(sf, name):
        return sf
    for g in globs:
        found = resolve(g + rest, crate, depth + 1)
        if found is not None and defines(found, name):
            return found
    return sf


@dataclass
class Edge:
    src: str
    dst: str
    line: int
    what: str


def edges_of(crate: Crate) -> list[Edge]:
    edges = []
    files = {sf.path: sf for sf in crate.modules.values()}
    for sf in files.values():
        for stmt in sf.uses:
            for e in stmt.entries:
                segs = list(e.segments)
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                path = absolute(stmt, segs, crate)
                if path is None:
                    continue
                target = resolve(path, crate)
                if target is None or target.path == sf.path:
                    continue
                if stmt.public and target.modpath[: len(sf.modpath)] == sf.modpath:
                    continue  # a facade re-exporting its own descendants
                written = "::".join(segs) + ("::*" if e.glob else "")
                edges.append(Edge(sf.path, target.path, stmt.line, written))
    return edges


def cycles(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        graph.setdefault(e.src, set()).add(e.dst)
        graph.setdefault(e.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        # Iterative, so deep module trees cannot hit Python's recursion limit.
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            advanced = False
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


# -- verdicts ------------------------------------------------------------------------


def check_tree(tree: str, out=sys.stdout) -> bool:
    """Prints the verdict for one source tree (all its crate roots); returns whether it
    has no circle."""
    label = tree.rstrip("/")
    if not os.path.isdir(tree):
        print(f"FAIL {label}: no such directory", file=out)
        return False
    crates, skipped = load_tree(tree)
    for p in skipped:
        print(f"note {label}: {p} is declared by no module (not compiled), skipped", file=out)
    if not crates:
        print(f"FAIL {label}: no lib.rs, main.rs or bin/*.rs", file=out)
        return False
    report = []
    files_seen: set[str] = set()
    pairs_seen: set[tuple[str, str]] = set()
    for crate in crates:
        files = sorted({sf.path for sf in crate.modules.values()})
        edges = edges_of(crate)
        files_seen.update(files)
        pairs_seen.update((e.src, e.dst) for e in edges)
        for component in cycles(files, edges):
            members = set(component)
            lines = [f"  circle of {len(component)} files ({crate.root}): {', '.join(component)}"]
            grouped: dict[tuple[str, int, str], list[str]] = {}
            for e in edges:
                if e.src in members and e.dst in members:
                    grouped.setdefault((e.src, e.line, e.dst), []).append(e.what)
            for (src, line, dst), what in sorted(grouped.items()):
                lines.append(f"    {src}:{line} -> {dst}  ({', '.join(sorted(set(what)))})")
            report.append(lines)
    roots = ", ".join(c.root for c in crates)
    if not report:
        print(
            f"OK   {label}: {len(files_seen)} files ({roots}), "
            f"{len(pairs_seen)} imports between them, no circle",
            file=out,
        )
        return True
    print(f"FAIL {label}: {len(report)} import circle(s)", file=out)
    for lines in report:
        print("\n".join(lines), file=out)
    return False


# -- self-test -----------------------------------------------------------------------

SELF_TEST_TREES = {
    # a -> b -> c -> a, through a grouped multi-line use, an inline path and a re-export.
    "cyclic": {
        "lib.rs": "pub mod a;\npub mod b;\npub mod c;\npub use c::Gamma;\n",
        "a.rs": "use crate::{\n    b::Beta,\n};\npub struct Alpha;\n",
        # A raw byte string ending in a backslash must not swallow the path after it.
        "b.rs": "pub struct Beta;\npub const RAW: &[u8] = br\"C:\\\";\n"
        "pub fn f() { let _ = crate::c::make(); }\n",
        "c.rs": "// use crate::b::Beta; (a comment, no edge)\npub struct Gamma;\n"
        "pub fn make() -> crate::Gamma { Gamma }\n"
        "pub(crate) use crate::a::Alpha as _;\n",
    },
    # A facade re-exporting its children, children using the facade's types and each
    # other one way, an inline test module using `super::*`: no circle.
    "acyclic": {
        "lib.rs": "//! Root.\npub mod config;\npub mod metrics;\npub mod server;\n"
        "pub use config::Config;\nuse server::serve;\npub fn run() { serve() }\n",
        "config/mod.rs": "mod load;\nmod parse;\npub use load::{load, Config};\n"
        "pub use parse::*;\npub struct Limits;\n",
        "config/load.rs": "use super::Limits;\nuse super::parse_secs;\n"
        "pub struct Config { pub limits: Limits }\npub fn load() {}\n",
        "config/parse.rs": "pub fn parse_secs() {}\n",
        "metrics.rs": 'pub const NAME: &str = "crate::server::x";\n',
        "server.rs": "use crate::{config::{self, Config}, metrics};\n"
        "pub fn serve() { let _ = metrics::NAME; config::load(); }\n"
        "#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::config::parse_secs;\n}\n",
    },
}


def self_test() -> bool:
    """Builds the two trees above in a temporary folder and checks both verdicts."""
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in SELF_TEST_TREES.items():
            for rel, text in files.items():
                full = os.path.join(tmp, name, rel)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w", encoding="utf-8") as f:
                    f.write(text)

        class Capture:
            def __init__(self):
                self.text = ""

            def write(self, s):
                self.text += s

        cyc = Capture()
        verdict = check_tree(os.path.join(tmp, "cyclic"), out=cyc)
        want = "circle of 3 files (lib.rs): a.rs, b.rs, c.rs"
        if verdict or want not in cyc.text:
            print("self-test FAIL: the cyclic tree's circle was not found:\n" + cyc.text)
            ok = False
        for edge in ("a.rs:1 -> b.rs", "b.rs:3 -> c.rs", "c.rs:4 -> a.rs"):
            if edge not in cyc.text:
                print(f"self-test FAIL: edge {edge!r} not listed:\n" + cyc.text)
                ok = False
        acyc = Capture()
        verdict = check_tree(os.path.join(tmp, "acyclic"), out=acyc)
        if not verdict or "no circle" not in acyc.text:
            print("self-test FAIL: the acyclic tree was reported:\n" + acyc.text)
            ok = False
        crate, _ = load_tree(os.path.join(tmp, "acyclic"))
        pairs = {(e.src, e.dst) for e in edges_of(crate[0])}
        want_pairs = {
            ("lib.rs", "server.rs"),
            ("config/load.rs", "config/mod.rs"),
            ("config/load.rs", "config/parse.rs"),
            ("server.rs", "config/mod.rs"),
            ("server.rs", "config/load.rs"),
            ("server.rs", "config/parse.rs"),
            ("server.rs", "metrics.rs"),
        }
        if pairs != want_pairs:
            print(f"self-test FAIL: acyclic edges {sorted(pairs)}, want {sorted(want_pairs)}")
            ok = False
    if ok:
        print("self-test OK: a 3-file circle found, the acyclic tree passed, its edges as expected")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", help=f"source trees (default: {' '.join(DEFAULT_TREES)})")
    parser.add_argument("--self-test", action="store_true", help="check the checker and exit")
    parser.add_argument("--edges", action="store_true", help="also print every import edge")
    args = parser.parse_args()
    if args.self_test:
        return 0 if self_test() else 1
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = args.trees or [os.path.join(root, t) for t in DEFAULT_TREES]
    if args.edges:
        for t in trees:
            for crate in load_tree(t)[0]:
                for src, dst in sorted({(e.src, e.dst) for e in edges_of(crate)}):
                    print(f"edge {os.path.relpath(t)} ({crate.root}): {src} -> {dst}")
    results = []
    for t in trees:
        shown = os.path.relpath(t) if os.path.isabs(t) else t
        results.append(check_tree(shown))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

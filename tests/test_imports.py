"""No import cycles: the modules of semir (and of backends/, which installs as semir.backends) import one
another as a DAG. Imports inside functions count too, since they are cycles deferred to run time; imports
under ``if TYPE_CHECKING:`` do not, since they never run."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("backends", "grammar"):
        parts[0] = f"semir.{parts[0]}"
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (_imports(n) for n in node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _flatten(items):
    for it in items:
        if isinstance(it, ast.AST):
            yield it
        else:
            yield from _flatten(it)


def import_graph() -> dict[str, set[str]]:
    files = {_name(p): p for d in ("semir", "backends") for p in (ROOT / d).rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in _flatten(_imports(ast.parse(path.read_text()))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
                continue
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:  # `from . import x` names a module; `from .m import f` names m
                deps.add(f"{target}.{a.name}" if f"{target}.{a.name}" in files else target)
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_from_the_sources():
    g = import_graph()
    assert "semir.frontend.builtins" in g["semir.frontend.builder"]
    assert "semir.ir.printer" in g["semir.ir.node"]  # a deferred import counts
    assert "semir.ir.node" not in g["semir.ir.printer"]  # one under TYPE_CHECKING does not
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_importing_semir_configures_nothing():
    # the environment (thread settings included) is untouched until the first Numba kernel is compiled
    import subprocess
    import sys

    code = ("import os; env = dict(os.environ); os.environ.pop('OMP_WAIT_POLICY', None); before = dict(os.environ)\n"
            "import semir, semir.backends.numba, semir.backends.reference, semir.analysis\n"
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
            "semir.compile(semir.parse('def f(x: f64) -> f64 { return exp(x) }'), 'sum_product', backend='numba')\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "PASSIVE"


def test_a_bare_checkout_says_to_install():
    # without an install's mapping of backends/ and grammar/ (the editable finder removed), one clear error
    import subprocess
    import sys

    code = ("import sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "try:\n    import semir\nexcept ImportError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused:" in out.stdout and "pip install -e ." in out.stdout, out.stdout + out.stderr

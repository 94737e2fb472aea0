"""Build the API reference from the docstrings with pdoc: ``python docs/build_api.py [OUT]`` (default
``docs/api``, which git ignores). Any pdoc warning (an annotation it cannot resolve, a module it cannot
import) fails the build; CI builds it through ``tests/test_apidocs.py``.

Every public module is documented, found from the source tree (``backends/`` as ``semir.backends``), so a
new module needs no edit here: pdoc's own package walk would stop at packages whose ``__all__`` lists names,
not submodules.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TREES = {"semir": REPO / "semir", "semir.backends": REPO / "backends"}


def modules() -> list[str]:
    """Every public module, packages before their modules, in a stable order."""
    names = []
    for prefix, root in TREES.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if any(p.startswith("_") for p in parts) or "__pycache__" in path.parts:
                continue
            names.append(".".join([prefix, *parts]))
    return sorted(set(names), key=lambda n: (n.split("."), n))


def build(out: Path) -> list[str]:
    """Write the reference to ``out``; pdoc's warnings as text (empty: a clean build)."""
    from pdoc import doc, render

    render.configure(docformat="restructuredtext", footer_text="semir API reference", show_source=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        all_modules = {name: doc.Module.from_name(name) for name in modules()}
        out.mkdir(parents=True, exist_ok=True)
        for name, module in all_modules.items():
            page = out / f"{name.replace('.', '/')}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(render.html_module(module, all_modules), encoding="utf-8")
        (out / "index.html").write_text(render.html_index(all_modules), encoding="utf-8")
        (out / "search.js").write_text(render.search_index(all_modules), encoding="utf-8")
    return [f"{w.category.__name__}: {w.message}" for w in caught if "/pdoc/" in w.filename.replace("\\", "/")]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "api"
    problems = build(target)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"API reference: {target / 'index.html'}, {len(modules())} modules"
          + (f"; {len(problems)} warnings" if problems else ""))
    sys.exit(1 if problems else 0)

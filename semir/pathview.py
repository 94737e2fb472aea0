"""How a path reads: its steps grouped by layer, one line each, with what happens inside.

A path on a real model has dozens of steps, most of them reshapes, transposes and bias adds with weight 1.
They are collapsed into the steps that matter: where the path chooses a branch (a node with several
consumers), where an edge scales it (weight ≠ 1), and where it moves to another token. Steps are grouped by
*segment*: the dotted name up to its first numbered part (``layer3``, ``encoder.layer.3``,
``lm.transformer.h.0``), otherwise the name without its last part (the module that owns it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .ir.node import Program

_NUMBERED = re.compile(r"\D*\d+")


def segment(name: str) -> tuple[str, bool]:
    """The layer (or module) a node belongs to, by its dotted name, and whether it is a numbered layer."""
    parts = name.split(".")
    if len(parts) == 1:
        return name, False
    for k, part in enumerate(parts[:-1]):
        if _NUMBERED.fullmatch(part):
            return ".".join(parts[:k + 1]), True
    return ".".join(parts[:-1]), False


@dataclass
class Item:
    """A step that matters: entered through an edge of ``weight``, perhaps from another token."""

    step: int
    label: str
    weight: float
    branch: bool
    token: tuple[int | None, int | None] = (None, None)


@dataclass
class Segment:
    key: str
    layer: bool
    steps: list[int] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    factor: float = 1.0


def sequence_length(program: Program, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The token count of a program over one sentence: the length of its integer id input, if it has one."""
    for n in program.nodes:
        dims = shapes.get(n.name)
        if n.op.value == "input" and n.type.dtype.is_int and dims is not None and len(dims) in (1, 2):
            if len(dims) == 1 or dims[0] == 1:
                return int(dims[-1])
    return None


def token_of(shape: tuple[int, ...], index: tuple[int, ...], length: int | None) -> int | None:
    """The token an element belongs to: the second-to-last axis of a [.., tokens, features] value."""
    if length is None or len(shape) < 2 or shape[-2] != length:
        return None
    return int(index[-2])


def segments(path, program: Program, shapes: dict[str, tuple[int, ...]], length: int | None) -> list[Segment]:
    """The path's steps grouped by segment, with the items that matter; segments without any are dropped."""
    consumers: dict[str, int] = {}
    for n in program.nodes:
        for i in set(n.inputs):
            consumers[i] = consumers.get(i, 0) + 1
    tokens = [token_of(shapes.get(s.node, ()), s.index, length) for s in path]
    out: list[Segment] = []
    for i, s in enumerate(path):
        key, layer = segment(s.node)
        if not out or out[-1].key != key:
            out.append(Segment(key, layer))
        seg = out[-1]
        seg.steps.append(i)
        if i == 0:
            continue
        w = float(path[i - 1].weight)
        seg.factor *= w
        branch = consumers.get(path[i - 1].node, 0) > 1
        moved = tokens[i - 1] is not None and tokens[i] is not None and tokens[i - 1] != tokens[i]
        if branch or w != 1.0 or moved:
            label = s.node[len(key) + 1:] if s.node.startswith(key + ".") else s.node.split(".")[-1]
            seg.items.append(Item(i, label, w, branch, (tokens[i - 1], tokens[i]) if moved else (None, None)))
    # a segment that neither scales, branches nor moves is a passage: its steps are not worth a line
    return [g for g in out if g.items or g.layer]


def _tok(t: int | None, words: list[str] | None) -> str:
    if t is None:
        return ""
    return f"{t} {words[t]!r}" if words is not None and 0 <= t < len(words) else str(t)


def _item(it: Item, words: list[str] | None) -> str:
    text = it.label
    if it.weight != 1.0:
        text += f" ×{it.weight:.3g}"
    if it.token[0] is not None:
        text += f" [token {_tok(it.token[0], words)} → {_tok(it.token[1], words)}]"
    return text


SHORT = 12  # a path of at most this many steps prints every step: grouping would hide more than it shows


def format_path(path, program: Program | None = None, tokens: list[str] | None = None,
                detail: bool | None = None) -> str:
    """A path as text: one line per layer, or with ``detail`` one line per step with every edge weight
    (``None``: per step for paths of at most ``SHORT`` steps and where no program is known)."""
    if not path:
        return "no path (the value is the semiring's zero)"
    first, last = path[0], path[-1]
    head = (f"path value {path.value:.6g} from {first.node}[{','.join(map(str, first.index))}] to {last.node}"
            f" ({len(path) - 1} edges)")
    if detail is None:
        detail = len(path) <= SHORT
    if detail or program is None:
        lines = [head]
        for s in path:
            idx = ",".join(map(str, s.index))
            lines.append(f"  {s.node}[{idx}]" + (f"  --({s.weight:.6g})-->" if s is not last else "  (output)"))
        return "\n".join(lines)
    shapes = path.shapes
    length = len(tokens) if tokens is not None else sequence_length(program, shapes)
    segs = segments(path, program, shapes, length)
    rows = []
    for g in segs:
        s = path[g.steps[-1]]
        t = token_of(shapes.get(s.node, ()), s.index, length)
        where = f"token {_tok(t, tokens)}" if t is not None else f"[{','.join(map(str, s.index))}]"
        rows.append((g.key, f"×{g.factor:.3g}", where, " › ".join(_item(it, tokens) for it in g.items) or "(identity)"))
    widths = [max((len(r[c]) for r in rows), default=0) for c in range(3)]
    return "\n".join([head] + ["  " + "  ".join(f"{r[c]:<{widths[c]}}" for c in range(3)) + "  " + r[3]
                                for r in rows])


def layer_hops(path, program: Program | None = None, tokens: list[str] | None = None) -> list[dict]:
    """The path as data, one entry per line of :func:`format_path`: the segment (layer), the factor it
    contributes, and the token the path leaves it at (``None`` where the value has no token axis). The first
    entry is where the path starts (factor 1); the factors multiply to the path's value."""
    if not path:
        return []
    shapes = path.shapes
    length = len(tokens) if tokens is not None else (sequence_length(program, shapes) if program else None)
    first = path[0]
    hops = [{"segment": segment(first.node)[0], "factor": 1.0,
             "token": token_of(shapes.get(first.node, ()), first.index, length)}]
    if program is None:
        for a, s in zip(path, path[1:]):
            hops.append({"segment": s.node, "factor": float(a.weight), "token": None})
        return hops
    for g in segments(path, program, shapes, length):
        s = path[g.steps[-1]]
        hops.append({"segment": g.key, "factor": float(g.factor),
                     "token": token_of(shapes.get(s.node, ()), s.index, length)})
    # segments() drops passages that neither scale nor branch: their factor is 1, so the product still holds
    return hops


def dot(paths: list, program: Program | None, title: str, tokens: list[str] | None = None) -> str:
    """Graphviz text for paths: the steps that matter as boxes, one cluster per segment laid out left to
    right, each edge labelled with the product of the weights it stands for and the paths that use it."""
    import json

    def key(p, i):
        return f"{p[i].node}[{','.join(map(str, p[i].index))}]"

    clusters: dict[str, list[str]] = {}
    edges: dict[tuple[str, str, float], list[int]] = {}
    for n, p in enumerate(paths, 1):
        if not p:
            continue
        shown = [0]
        if program is not None:
            length = len(tokens) if tokens is not None else sequence_length(program, p.shapes)
            shown += [it.step for g in segments(p, program, p.shapes, length) for it in g.items]
        else:
            shown += list(range(1, len(p)))
        shown = sorted(set(shown) | {len(p) - 1})
        for i in shown:
            members = clusters.setdefault(segment(p[i].node)[0], [])
            if key(p, i) not in members:
                members.append(key(p, i))
        for a, b in zip(shown, shown[1:]):
            w = float(np.prod([s.weight for s in p[a:b]]))
            # one edge per (from, to, weight): paths that take different routes between two shown steps differ
            edges.setdefault((key(p, a), key(p, b), w), []).append(n)
    lines = [f"digraph {json.dumps(title)} {{", "  rankdir=LR;", "  node [shape=box, fontsize=10];",
             f"  label={json.dumps(title)};"]
    for c, (seg, members) in enumerate(clusters.items()):
        lines.append(f"  subgraph cluster_{c} {{ label={json.dumps(seg)}; "
                     + " ".join(json.dumps(m) + ";" for m in members) + " }")
    for (a, b, w), used in edges.items():
        label = f"{w:.6g}" + (f"  (paths {','.join(map(str, used))})" if len(paths) > 1 else "")
        lines.append(f"  {json.dumps(a)} -> {json.dumps(b)} [label={json.dumps(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"

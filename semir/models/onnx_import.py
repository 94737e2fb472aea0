"""ONNX import: a transformer export as semir IR, keeping the ONNX tensor names.

Shapes are fixed at import (``shapes={"input_ids": (1, S), ...}``). Every node whose inputs are all constants
(shape and mask arithmetic: Shape of a constant, Gather on shapes, Unsqueeze, Concat, ConstantOfShape,
Equal, Where, ...) is evaluated at import by ONNX's own reference evaluator (``onnx.reference``), whatever
its op; ``Shape`` of a data-dependent value is its static shape. Only the ops that depend on input data become
IR, by the rules below. Float initializers, and folded array constants that feed data-dependent ops, become
named inputs whose values ``OnnxModel.inputs`` supplies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import ops
from ..errors import InputError, OptionError, SemirError
from ..frontend import builtins as B
from ..frontend.builder import Builder, Value
from ..ir.node import Program
from ..ir.types import DType, TensorType, dtype_from_numpy

_SUPPORTED = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_))


def _onnx_dtype(code: int, where: str) -> np.dtype:
    """The NumPy dtype of an ONNX element type (onnx's own mapping), if semir's IR has it; any other
    (float16, bfloat16, int8, ...) is refused: computing it in float32 would silently change every value."""
    from onnx import helper

    try:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(code))
    except (KeyError, TypeError, ValueError):
        raise OptionError(f"{where}: unknown ONNX element type {code}") from None
    if dt not in _SUPPORTED:
        raise OptionError(f"{where}: element type {dt} is not supported (semir computes in float32, float64, "
                          "int32, int64 and bool)")
    return dt


@dataclass
class OnnxModel:
    program: Program
    weights: dict[str, np.ndarray]
    output: str
    input_names: tuple[str, ...] = field(default=())
    readout: np.ndarray | None = None  # the default readout vector, when the program has one

    def __repr__(self) -> str:
        return f"<OnnxModel output {self.output!r}: {self.program!r}; {len(self.weights)} weights>"

    def inputs(self, **feeds) -> dict[str, np.ndarray]:
        """The graph inputs by name (e.g. input_ids, attention_mask) plus the weights, and ``readout`` when the
        program reads one out: ``readout=u`` here, else the one given to :func:`import_onnx`. There is no
        default: a zero readout would make every statistic 0."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputError(f"missing ONNX input(s): {', '.join(missing)}")
        out = {**self.weights, **{k: np.asarray(v) for k, v in feeds.items()}}
        if "readout" in self.program and "readout" not in feeds:
            if self.readout is None:
                want = self.program["readout"].type
                raise InputError(f"readout: no readout vector; pass readout=u ({want}) to inputs() or "
                                 "import_onnx(..., readout=u): the output is u · the first row of the output")
            out["readout"] = self.readout
        return out


class _Importer:
    def __init__(self, model, shapes: dict[str, tuple[int, ...]]):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.graph = model.graph
        self.opsets = {o.domain: o.version for o in model.opset_import}
        self.b = Builder()
        self.const: dict[str, np.ndarray] = {}
        self.dyn: dict[str, Value] = {}
        self.weights: dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            self.const[init.name] = numpy_helper.to_array(init)
        inits = set(self.const)
        self.inputs = []
        for inp in self.graph.input:
            if inp.name in inits:
                continue
            et = inp.type.tensor_type
            if inp.name not in shapes:
                raise InputError(f"ONNX input {inp.name!r} needs a shape: pass shapes={{{inp.name!r}: (...)}}")
            dt = dtype_from_numpy(_onnx_dtype(et.elem_type, f"ONNX input {inp.name!r}"))
            self.dyn[inp.name] = self.b.param(inp.name, TensorType(dt, tuple(int(d) for d in shapes[inp.name])))
            self.inputs.append(inp.name)

    # -- values ---------------------------------------------------------------

    def value(self, name: str) -> Any:
        if name == "":
            return None
        if name in self.dyn:
            return self.dyn[name]
        if name in self.const:
            return self.const[name]
        raise SemirError(f"ONNX graph uses undefined tensor {name!r}")

    def as_value(self, x: Any, name: str) -> Any:
        """A Value for a constant used by a data-dependent op: scalars stay literals, arrays become inputs."""
        if isinstance(x, Value):
            return x
        a = np.asarray(x)
        if a.ndim == 0:
            return a.item()
        if name not in self.dyn:
            dt = np.float32 if a.dtype.kind == "f" else (np.int64 if a.dtype.kind in "iu" else np.bool_)
            self.weights[name] = a.astype(dt)
            self.dyn[name] = self.b.param(name, TensorType(dtype_from_numpy(np.dtype(dt)), tuple(a.shape)))
        return self.dyn[name]

    def fold(self, node, ins: list) -> list[np.ndarray]:
        """A node with constant inputs, evaluated by ONNX's reference evaluator at the model's opsets."""
        from onnx.reference import ReferenceEvaluator

        feeds = {name: np.asarray(x) for name, x in zip(node.input, ins) if name}
        try:
            return [np.asarray(v) for v in ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)]
        except Exception as e:  # the evaluator raises whatever its op implementation raises
            raise OptionError(f"ONNX node {node.name!r} ({node.op_type}) on constants cannot be evaluated: "
                              f"{type(e).__name__}: {e}") from None

    # -- translation ------------------------------------------------------------

    def run(self, output: str, readout: Any) -> OnnxModel:
        for node in self.graph.node:
            ins = [self.value(i) for i in node.input]
            attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
            if not any(isinstance(x, Value) for x in ins):
                outs = self.fold(node, ins)
            elif node.op_type not in _RULES:
                raise OptionError(f"ONNX op {node.op_type!r} (node {node.name!r}) on data-dependent values is not "
                                  f"supported; supported: {', '.join(sorted(_RULES))}")
            else:
                try:
                    outs = _RULES[node.op_type](self, node, ins, attrs)
                except SemirError as e:
                    raise type(e)(f"ONNX node {node.name!r} ({node.op_type}): {e}") from None
            for name, v in zip(node.output, outs if isinstance(outs, list) else [outs]):
                if isinstance(v, Value):
                    self.dyn[name] = v
                    self.b.bind(v, name)
                else:
                    self.const[name] = np.asarray(v)
        if output not in self.dyn:
            raise OptionError(f"ONNX output {output!r} is not computed from the inputs; outputs: "
                              f"{', '.join(o.name for o in self.graph.output)}")
        out = self.dyn[output]
        default = None
        if readout is not False:
            width = out.shape[-1]
            if readout is not True:
                default = np.asarray(readout)
                if default.shape != (width,) or default.dtype.kind not in "biuf":
                    raise InputError(f"readout: expected a vector of shape ({width},), got {default.shape}")
                default = default.astype(np.float32)
            r = self.b.param("readout", TensorType(DType.f32, (width,)))
            first = out[(0,) * (out.ndim - 1)] if out.ndim > 1 else out
            out = ops.sum(first * r)
        prog = self.b.finish(out, "onnx", name_temporaries=True)
        return OnnxModel(prog, self.weights, output, tuple(self.inputs), default)


def _binary(name: str):
    def rule(im, node, ins, attrs):
        a, b = ins
        return B.binary(name, im.as_value(a, node.input[0]), im.as_value(b, node.input[1]))
    return rule


def _unary(fn):
    def rule(im, node, ins, attrs):
        return fn(ins[0])
    return rule


def _axes(im, node, ins, attrs, rank):
    axes = attrs.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in np.asarray(ins[1]).ravel()]
    return None if axes is None else [a % rank for a in axes]


def _reduce(fn_name):
    def rule(im, node, ins, attrs):
        x = ins[0]
        keep = bool(attrs.get("keepdims", 1))
        return getattr(ops, fn_name)(x, axis=_axes(im, node, ins, attrs, x.ndim), keepdims=keep)
    return rule


def _reshape(im, node, ins, attrs):
    x, shape = ins
    target = [int(t) for t in np.asarray(shape).ravel()]
    return ops.reshape(x, [x.shape[i] if t == 0 else t for i, t in enumerate(target)])


def _unsqueeze(im, node, ins, attrs):
    x = ins[0]
    shape = list(x.shape)
    axes = attrs.get("axes") or [int(a) for a in np.asarray(ins[1]).ravel()]
    for a in sorted(a % (len(shape) + len(axes)) for a in axes):
        shape.insert(a, 1)
    return ops.reshape(x, shape)


def _squeeze(im, node, ins, attrs):
    x = ins[0]
    shape = list(x.shape)
    axes = _axes(im, node, ins, attrs, len(shape))
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else axes
    return ops.reshape(x, [d for i, d in enumerate(shape) if i not in axes])


def _gather(im, node, ins, attrs):
    data, idx = ins
    axis = attrs.get("axis", 0)
    if isinstance(idx, Value):
        if axis != 0:
            raise SemirError("Gather with data-dependent indices is supported on axis 0 only")
        return ops.take(im.as_value(data, node.input[0]), idx)
    idx = np.asarray(idx)
    rank = data.ndim
    if idx.ndim == 0:
        spec = [slice(None)] * (axis % rank) + [int(idx)]
        return data[tuple(spec)]
    moved = ops.transpose(data, [axis % rank] + [i for i in range(rank) if i != axis % rank])
    table = ops.take(moved, im.as_value(idx.astype(np.int64), node.output[0] + ".indices"))
    return table if axis % rank == 0 else ops.transpose(
        table, list(range(idx.ndim, idx.ndim + axis % rank)) + list(range(idx.ndim)) + list(
            range(idx.ndim + axis % rank, idx.ndim + rank - 1)))


def _slice(im, node, ins, attrs):
    x = ins[0]
    shape = x.shape
    starts, ends = np.asarray(ins[1]).ravel(), np.asarray(ins[2]).ravel()
    axes = np.asarray(ins[3]).ravel() if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
    steps = np.asarray(ins[4]).ravel() if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), int)
    key = [slice(None)] * len(shape)
    for s, e, a, st in zip(starts, ends, axes, steps):
        d = shape[int(a) % len(shape)]
        key[int(a) % len(shape)] = slice(*slice(int(max(min(s, d), -d)), int(max(min(e, d), -d - 1)),
                                                int(st)).indices(d))
    return x[tuple(key)]


def _concat(im, node, ins, attrs):
    vals = [im.as_value(x, n) for x, n in zip(ins, node.input)]
    return ops.concat(vals, axis=attrs["axis"] % vals[0].ndim) if len(vals) > 1 else vals[0]


def _cast(im, node, ins, attrs):
    return ops.cast(ins[0], dtype_from_numpy(_onnx_dtype(attrs["to"], f"ONNX Cast node {node.name!r}")).value)


def _where(im, node, ins, attrs):
    c, a, b = ins
    return ops.where(im.as_value(c, node.input[0]), im.as_value(a, node.input[1]), im.as_value(b, node.input[2]))


def _expand(im, node, ins, attrs):
    x, shape = ins
    x = im.as_value(x, node.input[0])
    target = np.broadcast_shapes(tuple(x.shape), tuple(int(d) for d in np.asarray(shape)))
    if tuple(target) == tuple(x.shape):
        return x
    if x.dtype == DType.bool:  # booleans broadcast by selecting, not by arithmetic
        return ops.where(x, im.as_value(np.ones(target, bool), node.output[0] + ".true"),
                         im.as_value(np.zeros(target, bool), node.output[0] + ".false"))
    return x + im.as_value(np.zeros(target, dtype=x.dtype.numpy), node.output[0] + ".zeros")


def _clip(im, node, ins, attrs):
    x = ins[0]
    lo = ins[1] if len(ins) > 1 else None
    hi = ins[2] if len(ins) > 2 else None
    if lo is not None:
        x = ops.maximum(x, im.as_value(lo, node.input[1]))
    if hi is not None:
        x = ops.minimum(x, im.as_value(hi, node.input[2]))
    return x


def _layernorm(im, node, ins, attrs):
    x, g, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    if attrs.get("axis", -1) not in (-1, x.ndim - 1):
        raise SemirError("LayerNormalization is supported over the last axis only")
    g = im.as_value(g, node.input[1])
    b = im.as_value(b if b is not None else np.zeros(x.shape[-1], np.float32), node.input[2] if b is not None
                    else node.output[0] + ".bias")
    return ops.layernorm(x, g, b, eps=float(attrs.get("epsilon", 1e-5)))


def _matmul(im, node, ins, attrs):
    a, b = ins
    return im.as_value(a, node.input[0]) @ im.as_value(b, node.input[1])


def _gemm(im, node, ins, attrs):
    a, b = (im.as_value(x, n) for x, n in zip(ins[:2], node.input[:2]))
    if attrs.get("transA"):
        a = ops.transpose(a)
    if attrs.get("transB"):
        b = ops.transpose(b)
    y = (a @ b) * float(attrs.get("alpha", 1.0)) if attrs.get("alpha", 1.0) != 1.0 else a @ b
    if len(ins) > 2 and ins[2] is not None:
        y = y + im.as_value(np.asarray(ins[2]) * attrs.get("beta", 1.0), node.input[2])
    return y


def _pow(im, node, ins, attrs):
    x, p = ins
    if isinstance(p, Value):
        raise SemirError("Pow needs a constant exponent")
    return B.power(x, np.asarray(p).item())


def _shape(im, node, ins, attrs):  # of a data-dependent value: its static shape, a constant
    return np.asarray(ins[0].shape, dtype=np.int64)


# How each ONNX op on data-dependent values becomes IR (nodes on constants are folded by ``_Importer.fold``).
_RULES = {
    "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"), "Div": _binary("div"),
    "Equal": _binary("eq"), "MatMul": _matmul, "Gemm": _gemm, "Pow": _pow,
    "Sqrt": _unary(ops.sqrt), "Erf": _unary(ops.erf), "Tanh": _unary(ops.tanh), "Relu": _unary(ops.relu),
    "Exp": _unary(ops.exp), "Log": _unary(ops.log), "Neg": _unary(lambda x: -x), "Identity": _unary(lambda x: x),
    "Softmax": lambda im, n, ins, a: ops.softmax(ins[0], axis=a.get("axis", -1)),
    "LayerNormalization": _layernorm, "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"),
    "Gather": _gather, "Reshape": _reshape, "Transpose": lambda im, n, ins, a: ops.transpose(ins[0], list(a["perm"])),
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": _concat, "Cast": _cast, "Where": _where,
    "Expand": _expand, "Clip": _clip, "Slice": _slice, "Shape": _shape,
}


def import_onnx(path: str | Path, shapes: dict[str, tuple[int, ...]] | None = None, output: str | None = None,
                readout: Any = True) -> OnnxModel:
    """Translate an ONNX file; ``output`` names the graph output to analyse (default: the first computed one).

    ``readout``: True makes the scalar output ``u · output[0, ..., 0, :]`` with ``u`` an input fed at call time
    (``OnnxModel.inputs(readout=u)``); a vector makes it that default ``u``; False keeps the output as it is.
    """
    try:
        import onnx
    except ImportError:
        raise SemirError("ONNX import needs the optional package 'onnx': pip install 'semir[onnx]'") from None
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises several kinds for unreadable files
        raise OptionError(f"cannot read ONNX file {str(path)!r}: {e}") from None
    if shapes is None:
        described = ", ".join(f"{i.name}: {[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}"
                              for i in model.graph.input)
        raise InputError(f"import_onnx needs concrete input shapes, e.g. shapes={{'input_ids': (1, 12)}}; "
                         f"the graph's inputs are {described}")
    im = _Importer(model, shapes)
    if output is None:
        output = next((o.name for o in model.graph.output), None)
    return im.run(output, readout)

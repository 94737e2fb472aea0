"""``semir.from_torch``: a PyTorch module, captured with ``torch.export``, as semir IR.

PyTorch's graph is tensor-level: a ``Linear`` is one ``addmm`` whose scalar edges autograd never shows.
Here every ATen op of the exported (core-ATen decomposed) graph maps onto semir's primitives, whose scalar
edges are explicit, so every semiring sees the same gradient graph as torch's autograd differentiates.

Names come from the module hierarchy: a node computed inside ``encoder.layer.3.attention.query`` is named
``encoder.layer.3.attention.query.<aten op>``, and the module path itself names the module's output (an
alias), so ``wrt=["block.fc1"]`` selects what users call it. Parameters and buffers are inputs named by
their ``state_dict`` keys; :meth:`TorchModel.inputs` feeds them from the module. Shapes are the example
inputs' (export once per shape). Unsupported ops are refused with the op and the module path.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ops as B
from ..errors import InputError, OptionError, SemirError
from ..ir.node import Program
from ..ir.types import DType, TensorType
from .builder import Builder, Value

_DTYPES = {"torch.float32": DType.f32, "torch.float64": DType.f64, "torch.int64": DType.i64,
           "torch.int32": DType.i32, "torch.bool": DType.bool}


@dataclass
class TorchModel:
    """An exported module as IR: ``program``, the parameter arrays by name, the user inputs in order."""

    program: Program
    params: dict[str, np.ndarray]
    input_names: tuple[str, ...]
    output_node: str = ""
    module_paths: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return f"<TorchModel {self.program!r}; {len(self.params)} parameters; modules {len(self.module_paths)}>"

    def inputs(self, *args, **kwargs) -> dict[str, np.ndarray]:
        """The program's inputs: the user inputs (positional in ``forward``'s order, or by name) plus every
        parameter and buffer of the module."""
        if len(args) > len(self.input_names):
            raise InputError(f"the module takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                             f"got {len(args)}")
        feeds = dict(zip(self.input_names, args))
        for k, v in kwargs.items():
            if k not in self.input_names:
                raise InputError(f"unexpected input {k!r}; the inputs are: {', '.join(self.input_names)}")
            feeds[k] = v
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputError(f"missing input(s): {', '.join(missing)}")
        return {**self.params, **{k: _numpy(v) for k, v in feeds.items()}}


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _torch():
    try:
        import torch
    except ImportError:
        raise SemirError("from_torch needs PyTorch: pip install 'semir[torch]' (torch==2.13.0)") from None
    return torch


def from_torch(module, example_inputs: tuple, name: str | None = None) -> TorchModel:
    """Export ``module`` (in eval mode) on ``example_inputs`` and translate its graph to semir IR."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise OptionError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    modes = [(m, m.training) for m in module.modules()]
    module.eval()  # dropout off, batch norm with running statistics: the function being analysed
    try:
        ep = torch.export.export(module, example_inputs).run_decompositions()
    except Exception as e:  # torch raises many kinds for code it cannot capture
        raise OptionError(f"torch.export could not capture {type(module).__name__}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    finally:
        for m, training in modes:  # each submodule as it was (train() on the root would set them all)
            m.training = training
    return _Translator(ep, torch).run(name or type(module).__name__)


class _Translator:
    def __init__(self, ep, torch):
        self.ep, self.torch = ep, torch
        self.b = Builder()
        self.env: dict[str, Any] = {}
        self.params: dict[str, np.ndarray] = {}
        self.user_inputs: list[str] = []
        # Nodes computed from no input at all (positions, causal masks): evaluated here with torch, since the
        # shapes are fixed. Never a node that depends on an input or a parameter, whose value changes per call.
        self.consts: dict[str, Any] = {}
        self.const_inputs: dict[str, Value] = {}

    def run(self, name: str) -> TorchModel:
        sig = self.ep.graph_signature
        kinds = {spec.arg.name: spec for spec in sig.input_specs}
        state = {**self.ep.state_dict, **getattr(self.ep, "constants", {})}
        graph = self.ep.graph
        paths: dict[str, str] = {}
        out_value = None
        tied: dict[int, Value] = {}  # one input per tensor: a tied weight's names are aliases of it
        for node in graph.nodes:
            if node.op == "placeholder":
                spec = kinds[node.name]
                if spec.kind.name == "USER_INPUT":
                    pname = node.name
                    self.user_inputs.append(pname)
                else:
                    pname = spec.target
                    tensor = state[pname]
                    if spec.kind.name != "PARAMETER" and not tensor.is_floating_point():
                        # an integer or boolean buffer (position ids, masks) carries no gradient path: a constant
                        self.consts[node.name] = tensor
                        continue
                    if id(tensor) in tied:
                        self.env[node.name] = tied[id(tensor)]
                        self.b.bind(tied[id(tensor)], pname)
                        continue
                    self.params[pname] = _numpy(tensor)
                self.env[node.name] = self.b.param(pname, self._type(node, pname))
                if spec.kind.name != "USER_INPUT":
                    tied[id(state[pname])] = self.env[node.name]
            elif node.op == "call_function":
                if all(a.name in self.consts for a in node.all_input_nodes):
                    self.consts[node.name] = self._fold(node)
                    continue
                path = _module_path(node)
                self.env[node.name] = self._call(node, path)
                if isinstance(self.env[node.name], Value):
                    self.b.bind(self.env[node.name], f"{path}.{node.name}" if path else node.name)
                    paths[node.name] = path
            elif node.op == "output":
                outs = node.args[0]
                if len(outs) != 1 or not isinstance(self.env.get(outs[0].name), Value):
                    raise OptionError("from_torch: the module must return one tensor (the output the semirings "
                                      f"differentiate); it returns {len(outs)} values")
                out_value = self.env[outs[0].name]
            else:
                raise OptionError(f"from_torch: unsupported graph node kind {node.op!r} ({node.name})")
        self._name_module_outputs(graph, paths)
        if out_value.type.dtype not in (DType.f32, DType.f64):
            raise OptionError(f"from_torch: the output is {out_value.type}; semirings need a float output")
        prog = self.b.finish(out_value, name, name_temporaries=True)
        modules = tuple(sorted({p for p in paths.values() if p}))
        return TorchModel(prog, self.params, tuple(self.user_inputs), prog.output, modules)

    def _type(self, node, what: str) -> TensorType:
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape"):
            raise OptionError(f"from_torch: input {what!r} is not a tensor")
        dt = _DTYPES.get(str(val.dtype))
        if dt is None:
            raise OptionError(f"from_torch: input {what!r} has dtype {val.dtype}; semir computes in float32, "
                              "float64, int32, int64 and bool")
        try:
            shape = tuple(int(d) for d in val.shape)
        except TypeError:
            raise OptionError(f"from_torch: input {what!r} has a dynamic shape; export with static shapes") from None
        return TensorType(dt, shape)

    def _name_module_outputs(self, graph, paths: dict[str, str]) -> None:
        """Alias each module path to its output: the last node inside it that is used outside it."""
        order = [n for n in graph.nodes if n.name in paths]
        best: dict[str, Any] = {}
        for n in order:
            path = paths[n.name]
            prefixes = [".".join(path.split(".")[:i]) for i in range(1, len(path.split(".")) + 1)] if path else []
            for p in prefixes:
                outside = [u for u in n.users if u.op == "output" or not _inside(paths.get(u.name, ""), p)]
                if outside:
                    best[p] = n
        for p, n in sorted(best.items()):
            self.b.bind(self.env[n.name], p)

    def _call(self, node, path: str) -> Any:
        target = node.target
        key = "getitem" if target is operator.getitem else str(target)
        rule = ATEN.get(key)
        if rule is None:
            where = f" in module {path!r}" if path else ""
            raise OptionError(f"from_torch: ATen op {key!r}{where} (node {node.name!r}) is not supported; "
                              f"supported: {', '.join(sorted(ATEN))}")
        args = [self._arg(a) for a in node.args]
        kwargs = {k: self._arg(v) for k, v in node.kwargs.items()}
        try:
            return rule(self, *args, **kwargs)
        except SemirError as e:
            raise OptionError(f"from_torch: {key} (node {node.name!r}{', module ' + repr(path) if path else ''}): "
                              f"{e}") from None

    def _fold(self, node) -> Any:
        def value(a):
            if isinstance(a, self.torch.fx.Node):
                return self.consts[a.name]
            if isinstance(a, list | tuple):
                return type(a)(value(x) for x in a)
            return a

        try:
            return node.target(*value(node.args), **{k: value(v) for k, v in node.kwargs.items()})
        except Exception as e:
            raise OptionError(f"from_torch: could not evaluate the constant {node.name!r} ({node.target}): {e}") \
                from None

    def _const(self, name: str) -> Any:
        """A folded constant where a traced op uses it: a number, or a program input fed with its value."""
        c = self.consts[name]
        if not isinstance(c, self.torch.Tensor):
            return c
        if c.dim() == 0:
            return c.item()
        if name not in self.const_inputs:
            arr = c.detach().cpu().numpy()
            dt = _DTYPES.get(str(c.dtype))
            if dt is None:
                raise OptionError(f"from_torch: constant {name!r} has dtype {c.dtype}")
            pname = f"const.{name}"
            self.params[pname] = arr
            self.const_inputs[name] = self.b.param(pname, TensorType(dt, tuple(arr.shape)))
        return self.const_inputs[name]

    def _arg(self, a: Any) -> Any:
        fx = self.torch.fx
        if isinstance(a, fx.Node):
            if a.name in self.consts:
                return self._const(a.name)
            return self.env[a.name]
        if isinstance(a, list | tuple):
            return type(a)(self._arg(x) for x in a)
        return a


def _module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L__self___", "").strip(".")


def _inside(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


# -- the ATen table: one rule per op (core ATen after torch.export's decompositions) -------------------

def _dims(x: Value, dims) -> list[int]:
    return [int(d) % max(x.ndim, 1) for d in (dims if isinstance(dims, list | tuple) else [dims])]


def _reduce(fn: Callable):
    def rule(t, x, dims=None, keepdim=False, dtype=None):
        if dtype is not None:
            raise SemirError("a reduction with a dtype conversion is not supported")
        axes = None if dims is None or list(dims) == [] else _dims(x, dims)
        return fn(x, axes, bool(keepdim))
    return rule


def _addmm(t, bias, x, w, beta=1, alpha=1):
    if beta != 1 or alpha != 1:
        raise SemirError("addmm with beta or alpha other than 1 is not supported")
    return x @ w + bias


def _layer_norm(t, x, shape, w=None, b=None, eps=1e-5):
    if len(shape) != 1:
        raise SemirError("layer_norm over more than the last axis is not supported")
    if w is None or b is None:
        raise SemirError("layer_norm without elementwise_affine weights is not supported")
    return (B.layernorm(x, w, b, eps=float(eps)), None, None)


def _slice(t, x, dim=0, start=None, end=None, step=1):
    dim = _dims(x, dim)[0]
    size = x.shape[dim]
    end = None if end is None or (isinstance(size, int) and end >= size) else end
    start = None if start in (None, 0) else start
    return x[(slice(None),) * dim + (slice(start, end, None if step == 1 else step),)]


def _select(t, x, dim, index):
    return x[(slice(None),) * _dims(x, dim)[0] + (int(index),)]


def _expand(t, x, shape):
    shape = [x.shape[i - (len(shape) - x.ndim)] if d == -1 else d for i, d in enumerate(shape)]
    lead = len(shape) - x.ndim
    if lead:
        x = B.reshape(x, [1] * lead + list(x.shape))
    for axis, (have, want) in enumerate(zip(x.shape, shape)):
        if have != want:
            if have != 1:
                raise SemirError(f"cannot expand {x.type} to {shape}")
            x = B.concat([x] * int(want), axis=axis)  # one weight-1 edge per copy, as expand's Jacobian
    return x


def _split(t, x, sizes, dim=0):
    dim, out, at = _dims(x, dim)[0], [], 0
    for s in sizes:
        out.append(x[(slice(None),) * dim + (slice(at, at + s),)])
        at += s
    return out


def _unsqueeze(t, x, dim):
    dim = int(dim) % (x.ndim + 1)
    return B.reshape(x, list(x.shape[:dim]) + [1] + list(x.shape[dim:]))


def _squeeze(t, x, dims=None):
    drop = set(range(x.ndim)) if dims is None else set(_dims(x, dims))
    return B.reshape(x, [d for i, d in enumerate(x.shape) if not (i in drop and d == 1)])


def _to_copy(t, x, dtype=None, **kwargs):
    if dtype is None:
        return x
    dt = _DTYPES.get(str(dtype))
    if dt is None:
        raise SemirError(f"conversion to {dtype} is not supported")
    return B.cast(x, dt.value) if dt != x.dtype else x


def _scalar_binary(fn):
    def rule(t, a, b, alpha=1):
        if alpha != 1:
            b = b * alpha
        return fn(a, b)
    return rule


ATEN: dict[str, Callable] = {
    "getitem": lambda t, xs, i: xs[i],
    "aten._assert_tensor_metadata.default": lambda t, *args, **kwargs: None,  # a check torch already made
    "aten.addmm.default": _addmm,
    "aten.mm.default": lambda t, a, b: a @ b,
    "aten.bmm.default": lambda t, a, b: a @ b,
    "aten.matmul.default": lambda t, a, b: a @ b,
    "aten.permute.default": lambda t, x, dims: B.transpose(x, _dims(x, dims)),
    "aten.t.default": lambda t, x: B.transpose(x),
    "aten.transpose.int": lambda t, x, a, b: B.transpose(x, _swap(x.ndim, *_dims(x, [a, b]))),
    "aten.view.default": lambda t, x, shape: B.reshape(x, list(shape)),
    "aten.reshape.default": lambda t, x, shape: B.reshape(x, list(shape)),
    "aten._unsafe_view.default": lambda t, x, shape: B.reshape(x, list(shape)),
    "aten.expand.default": _expand,
    "aten.unsqueeze.default": _unsqueeze,
    "aten.squeeze.dims": _squeeze,
    "aten.squeeze.dim": _squeeze,
    "aten.squeeze.default": _squeeze,
    "aten.cat.default": lambda t, xs, dim=0: B.concat(list(xs), axis=_dims(xs[0], dim)[0]),
    "aten.slice.Tensor": _slice,
    "aten.select.int": _select,
    "aten.split_with_sizes.default": _split,
    "aten.clone.default": lambda t, x, memory_format=None: x,
    "aten.alias.default": lambda t, x: x,
    "aten.contiguous.default": lambda t, x, memory_format=None: x,
    "aten._to_copy.default": _to_copy,
    "aten.detach.default": lambda t, x: B.detach(x),
    "aten.embedding.default": lambda t, w, ids, *rest: B.take(w, ids),
    "aten.native_layer_norm.default": _layer_norm,
    "aten._softmax.default": lambda t, x, dim, half=False: B.softmax(x, axis=_dims(x, dim)[0]),
    "aten._log_softmax.default": lambda t, x, dim, half=False: B.log_softmax(x, axis=_dims(x, dim)[0]),
    "aten.gelu.default": lambda t, x, approximate="none": B.gelu(x, approximate=approximate),
    "aten.add.Tensor": _scalar_binary(lambda a, b: a + b),
    "aten.add.Scalar": _scalar_binary(lambda a, b: a + b),
    "aten.sub.Tensor": _scalar_binary(lambda a, b: a - b),
    "aten.sub.Scalar": _scalar_binary(lambda a, b: a - b),
    "aten.rsub.Scalar": _scalar_binary(lambda a, b: b - a),
    "aten.mul.Tensor": lambda t, a, b: a * b,
    "aten.mul.Scalar": lambda t, a, b: a * b,
    "aten.div.Tensor": lambda t, a, b: a / b,
    "aten.div.Scalar": lambda t, a, b: a / b,
    "aten.neg.default": lambda t, x: -x,
    "aten.pow.Tensor_Scalar": lambda t, x, p: x ** p,
    "aten.maximum.default": lambda t, a, b: B.maximum(a, b),
    "aten.minimum.default": lambda t, a, b: B.minimum(a, b),
    "aten.where.self": lambda t, c, a, b: B.where(c, a, b),
    "aten.sum.dim_IntList": _reduce(lambda x, axes, k: B.sum(x, axes, k)),
    "aten.sum.default": _reduce(lambda x, axes, k: B.sum(x, axes, k)),
    "aten.mean.dim": _reduce(lambda x, axes, k: B.mean(x, axes, k)),
    "aten.mean.default": _reduce(lambda x, axes, k: B.mean(x, axes, k)),
    "aten.amax.default": _reduce(lambda x, axes, k: B.max(x, axes, k)),
    **{f"aten.{op}.default": (lambda f: lambda t, x: f(x))(getattr(B, op))
       for op in ("exp", "log", "tanh", "sigmoid", "relu", "sqrt", "rsqrt", "abs", "sin", "cos", "erf")},
}


def _swap(rank: int, a: int, b: int) -> list[int]:
    axes = list(range(rank))
    axes[a], axes[b] = axes[b], axes[a]
    return axes

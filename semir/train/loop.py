"""Minibatch training on cross-entropy with gradients from semir's compiled sum_product kernels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler import compile
from ..errors import InputError, OptionError
from ..ir.node import Node, Program, make_attrs
from ..ir.ops import Op
from ..ir.types import TensorType
from ..ir.verify import verify
from ..progress import Progress
from .optim import Adam


def cross_entropy_program(prog: Program, labels: str = "labels") -> Program:
    """``prog`` (output: logits [B, C]) extended with an input ``labels`` [B, C] of per-example label weights
    and output ``-Σ labels ⊙ log_softmax(logits)``. With one-hot rows divided by the batch size, that is
    the mean cross-entropy; the log-softmax is the stable primitive (no exp of raw logits)."""
    out = prog.by_name[prog.output]
    if len(out.type.shape) != 2:
        raise OptionError(f"training needs a program whose output is logits [B, C]; {prog.name!r} returns "
                          f"{out.type}")
    if labels in prog:
        raise OptionError(f"the program already has a node named {labels!r}; pass labels=<another name>")
    t = out.type
    scalar = TensorType(t.dtype, ())
    inputs = [n for n in prog.nodes if n.op is Op.input]
    body = [n for n in prog.nodes if n.op is not Op.input]
    loss = [Node("loss.logp", Op.log_softmax, t, (out.name,), make_attrs(axis=1)),
            Node("loss.picked", Op.mul, t, ("loss.logp", labels)),
            Node("loss.total", Op.sum, scalar, ("loss.picked",), make_attrs(axes=(0, 1))),
            Node("loss", Op.neg, scalar, ("loss.total",))]
    # built as IR (the labels a new input after the others), then checked as any program is
    extended = Program(prog.name, (*inputs, Node(labels, Op.input, t), *body, *loss), "loss", prog.aliases)
    verify(extended)
    return extended


def _as_data(prog: Program, params: dict, data: Any) -> dict[str, np.ndarray]:
    names = [n.name for n in prog.inputs if n.name not in params]
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        if missing:
            raise InputError(f"data: missing input(s) {missing}; the program's data inputs are {names}")
        return {n: np.asarray(data[n]) for n in names}
    if len(names) != 1:
        raise InputError(f"data: the program has data inputs {names}; pass a dict of arrays by name")
    return {names[0]: np.asarray(data)}


def _rows(data: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in data.items()}


def predict(prog: Program, params: dict, data: Any, batch_size: int = 1024, backend: str | None = None,
            kernel=None) -> np.ndarray:
    """Logits of ``prog`` for every example (forward only, in batches)."""
    data = _as_data(prog, params, data)
    k = kernel or compile(prog, "sum_product", backend=backend, wrt=[])
    n = len(next(iter(data.values())))
    return np.concatenate([k.forward(**params, **_rows(data, slice(i, i + batch_size)))
                           for i in range(0, n, batch_size)], axis=0)


def accuracy(prog: Program, params: dict, data: Any, labels: np.ndarray, **kw) -> float:
    return float(np.mean(np.argmax(predict(prog, params, data, **kw), axis=-1) == np.asarray(labels)))


@dataclass
class TrainResult:
    params: dict[str, np.ndarray]
    history: list[dict] = field(default_factory=list)  # one record per step: step, epoch, loss
    evals: list[dict] = field(default_factory=list)  # every `every` steps and at the end: val accuracy, hook

    @property
    def final_val_accuracy(self) -> float | None:
        vals = [e["val_accuracy"] for e in self.evals if "val_accuracy" in e]
        return vals[-1] if vals else None


def semiring_hook(program: Program, semiring: str, examples: list[dict], wrt: str,
                  reduce: Callable[[Any], dict] | None = None, backend: str | None = None) -> Callable:
    """A training hook: run ``program`` in ``semiring`` on held-out ``examples`` (each a dict of data inputs)
    with the current parameters; ``reduce(result)`` turns one result into numbers (default: the mean
    finalized value at ``wrt``), averaged over the examples."""
    kernel = compile(program, semiring, backend=backend, wrt=[wrt])
    reduce = reduce or (lambda r: {f"{semiring}.{wrt}": float(np.mean(r[wrt]))})

    def hook(step: int, params: dict) -> dict:
        # an example may carry the parameters it was made with (``m.inputs(x)``): the current ones win
        rows = [reduce(kernel(**{**ex, **params})) for ex in examples]
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    return hook


def save_checkpoint(path, params: dict, optimizer, step: int, epoch: int) -> None:
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({f"opt/{k}": np.asarray(v) for k, v in optimizer.state.items()})
    arrays.update(step=np.asarray(step), epoch=np.asarray(epoch))
    tmp = Path(str(path) + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_checkpoint(path) -> dict:
    """{"params", "optimizer_state", "step", "epoch"} from an npz written by :func:`train`."""
    with np.load(path) as z:
        return {"params": {k[6:]: z[k] for k in z.files if k.startswith("param/")},
                "optimizer_state": {k[4:]: z[k] for k in z.files if k.startswith("opt/")},
                "step": int(z["step"]), "epoch": int(z["epoch"])}


def train(prog: Program, params: dict[str, np.ndarray], data: Any, labels: np.ndarray, *, optimizer=None,
          epochs: int = 1, batch_size: int = 64, seed: int = 0, val: tuple[Any, np.ndarray] | None = None,
          every: int = 0, hook: Callable[[int, dict], dict] | None = None, checkpoint: str | Path | None = None,
          resume: str | Path | None = None, progress: bool = True, backend: str | None = None,
          stop_at_accuracy: float | None = None) -> TrainResult:
    """Train the parameters of ``prog`` (output: logits [B, C]) on cross-entropy.

    ``params``: initial values of the program inputs to train (copied); every other input is data,
    given by ``data`` (an array for a single data input, else a dict by name; first axis = examples).
    Gradients come from ``compile(cross_entropy_program(prog), "sum_product", wrt=params)``. Each epoch
    visits the examples in an order drawn from ``(seed, epoch)``, so runs (and resumed runs) are
    deterministic. Every ``every`` steps and after the last one, validation accuracy on ``val`` and the
    ``hook(step, params)`` numbers are recorded in ``result.evals``. ``checkpoint``: an npz written after
    every epoch (parameters, optimizer state, step); ``resume`` continues from one.
    ``stop_at_accuracy``: stop after an epoch whose validation accuracy reaches it.
    """
    params = {k: np.array(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else None)
              for k, v in params.items()}
    unknown_p = [k for k in params if k not in prog]
    if unknown_p:
        raise InputError(f"params: {unknown_p} are not inputs of {prog.name!r}")
    data = _as_data(prog, params, data)
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    C = prog.by_name[prog.output].type.shape[-1]
    if any(len(v) != n for v in data.values()):
        raise InputError(f"data and labels disagree on the number of examples ({n} labels)")
    if labels.min() < 0 or labels.max() >= C:
        raise InputError(f"labels must lie in 0..{C - 1} (the program has {C} logits)")
    optimizer = optimizer or Adam(1e-2)
    loss_kernel = compile(cross_entropy_program(prog), "sum_product", backend=backend, wrt=sorted(params))
    fwd_kernel = compile(prog, "sum_product", backend=backend, wrt=[])
    step, start_epoch = 0, 0
    if resume is not None:
        ck = load_checkpoint(resume)
        params.update(ck["params"])
        optimizer.state = dict(ck["optimizer_state"])
        step, start_epoch = ck["step"], ck["epoch"]
    result = TrainResult(params)
    per_epoch = -(-n // batch_size)
    bar = Progress((epochs - start_epoch) * per_epoch, "train", enabled=progress)

    def evaluate(epoch: int) -> dict:
        rec: dict = {"step": step, "epoch": epoch}
        if val is not None:
            rec["val_accuracy"] = accuracy(prog, params, val[0], val[1], kernel=fwd_kernel)
        if hook is not None:
            rec.update(hook(step, params))
        result.evals.append(rec)
        return rec

    for epoch in range(start_epoch, epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            onehot = np.zeros((len(idx), C), np.float32)
            onehot[np.arange(len(idx)), labels[idx]] = 1.0 / len(idx)
            r = loss_kernel(**params, **_rows(data, idx), labels=onehot)
            optimizer.step(params, {k: r[k] for k in params})
            step += 1
            loss = float(r.output)
            result.history.append({"step": step, "epoch": epoch, "loss": loss})
            bar.update(1, epoch=epoch, loss=loss)
            if every and step % every == 0:
                evaluate(epoch)
        if checkpoint is not None:
            save_checkpoint(checkpoint, params, optimizer, step, epoch + 1)
        if stop_at_accuracy is not None and val is not None:
            if evaluate(epoch).get("val_accuracy", 0.0) >= stop_at_accuracy:
                break
    bar.close()
    if not result.evals or result.evals[-1]["step"] != step:
        evaluate(epochs - 1)
    return result

"""What an analysis attributes: the objective, a scalar the encoder's program outputs, and one line saying so.

Every objective is a readout of the final hidden state (at a position, or mean-pooled), perhaps through the
masked-LM head's transform, perhaps two readouts subtracted (a logit difference, each logit with paths of
its own) or normalised (a cosine). ``parse`` reads the specs ``semir analyze --objective`` takes:

=====================  ================================================================================
``FILE.npy``           u · h_final[position], u from the file (``readout:FILE.npy`` says the same)
``pooled:K``           component K of the mean-pooled final states (the sentence embedding)
``cosine:TEXT``        cosine similarity of the sentence's pooled embedding with that of TEXT
``probe:FILE.npz``     a linear probe's logit difference (class 1 − class 0; ``:A-B`` or ``:A`` to choose)
``mlm:TOKEN[,TOKEN]``  the masked-LM logit of TOKEN (minus that of the second) at the sentence's [MASK]
``random``             a seeded random direction: a probe of the network, not a task
=====================  ================================================================================

A probe reads standardised states z = (h − μ)/σ. The edge h_j → z_j has weight 1/σ_j and is in series with
the probe's weight w_j, so the readout w/σ on h has exactly the same paths and path products; the probe's
bias and μ shift the output by a constant that no path carries (``offset``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, OptionError

KINDS = ("FILE.npy", "readout:FILE.npy", "pooled:K", "cosine:TEXT", "probe:FILE.npz[:A-B]", "mlm:TOKEN[,TOKEN]",
         "random")


@dataclass
class Objective:
    kind: str
    description: str
    readout: np.ndarray
    readout_b: np.ndarray | None = None  # subtracted: output = readout · x − readout_b · x
    offset: float = 0.0  # the objective's value is the program's output plus this constant
    pool: str | None = None
    head: str | None = None
    normalize: bool = False
    position: int | None = 0  # None: each sentence's [MASK] token
    mask_id: int | None = field(default=None, repr=False)
    # a probe's value from the state it reads, in float64: ((h − mu)/sd) @ w + b, the classes' logits signed.
    # (h · w/sd − mu · w/sd in float32 would cancel where sd is small.)
    probe: dict | None = field(default=None, repr=False)

    def value(self, result, k: int | None = None) -> float:
        """The objective's value for sentence ``k`` of a (batched) result of ``program``."""
        if self.probe is not None:
            h = np.asarray(result.value("pooled" if self.pool else "final"), np.float64)
            h = h if k is None else h[k]
            p = self.probe
            logits = ((h - p["mu"]) / p["sd"]) @ p["w"] + p["b"]
            return float(logits @ p["sign"])
        v = np.asarray(result.value("objective"), np.float64)
        return float(v if k is None else v[k]) + self.offset

    def program(self, model, position: int, batch: bool = False):
        return model.program(position=position, pool=self.pool, batch=batch, head=self.head,
                             contrast=self.readout_b is not None, normalize=self.normalize)

    def single_inputs(self, model, ids) -> dict[str, np.ndarray]:
        """The inputs of ``program(model, position)`` for one sentence."""
        return model.inputs(ids, readout=self.readout, readout_b=self.readout_b, head=self.head)

    def inputs(self, model, batch_ids: list) -> dict[str, np.ndarray]:
        """The inputs of ``program(model, position, batch=True)`` for sentences of one length."""
        ins = model.batch_inputs(batch_ids, readout=self.readout)
        if self.readout_b is not None:
            ins["readout_b"] = self.readout_b
        if self.head:
            ins.update(model.head_params())
        return ins

    def position_of(self, ids: np.ndarray) -> int:
        """The state the objective reads: ``position``, or the sentence's one [MASK]."""
        if self.position is not None:
            if not 0 <= self.position < len(ids):
                raise InputError(f"the position {self.position} is outside the sentence's {len(ids)} tokens")
            return self.position
        at = np.flatnonzero(np.asarray(ids) == self.mask_id)
        if len(at) != 1:
            raise InputError(f"the masked-LM objective reads the sentence's [MASK] token; it has {len(at)}")
        return int(at[0])

    def fingerprint(self) -> str:
        h = hashlib.sha256(f"{self.kind}\0{self.description}\0{self.offset!r}\0{self.pool}\0{self.head}\0"
                           f"{self.normalize}\0{self.position}\0{self.mask_id}".encode())
        for a in (self.readout, self.readout_b):
            if a is not None:
                h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        return h.hexdigest()


def from_vector(model, u, position: int = 0, description: str | None = None) -> Objective:
    u = model.check_readout(u)
    return Objective("readout", description or f"u · the final hidden state at position {position}, u given",
                     u, position=position)


def parse(spec: str, model, position: int = 0, seed: int = 0) -> Objective:
    """The objective ``spec`` names (see the module's table) for ``model``."""
    where = f"the final hidden state at position {position}"
    kind, _, arg = spec.partition(":")
    if spec == "random":
        u = np.random.default_rng(seed).normal(size=model.hidden).astype(np.float32)
        return Objective("random", f"u · {where}, u a random N(0, 1) direction (seed {seed}): a probe of the "
                         "network, not a task; give --objective for one of your own", u, position=position)
    if kind == "pooled":
        if not arg.isdigit() or not 0 <= int(arg) < model.hidden:
            raise InputError(f"--objective {spec!r}: K must be a component 0..{model.hidden - 1}")
        u = np.zeros(model.hidden, np.float32)
        u[int(arg)] = 1.0
        return Objective("pooled", f"component {arg} of the mean-pooled final hidden states (the sentence "
                         "embedding)", u, pool="mean", position=0)
    if kind == "cosine":
        if not arg.strip():
            raise InputError("--objective cosine:TEXT: give the reference sentence after the colon")
        e = _pooled(model, arg).astype(np.float64)
        norm = float(np.linalg.norm(e))
        if not norm > 0:
            raise InputError(f"--objective {spec!r}: the reference sentence's embedding is zero")
        return Objective("cosine", f"cosine similarity of the mean-pooled final hidden states with those of "
                         f"{arg!r}", (e / norm).astype(np.float32), pool="mean", normalize=True, position=0)
    if kind == "probe":
        return _probe(model, spec, arg)
    if kind == "mlm":
        return _mlm(model, spec, arg)
    path = arg if kind == "readout" else spec
    if path.endswith(".npy"):
        try:
            u = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"--objective: cannot read {path!r} ({e})") from None
        if not isinstance(u, np.ndarray) or u.shape != (model.hidden,) or u.dtype.kind not in "biuf":
            raise InputError(f"--objective: expected a .npy vector of shape ({model.hidden},), got "
                             f"{getattr(u, 'shape', u)}")
        if not np.all(np.isfinite(u)):
            raise InputError(f"--objective: {path} contains NaN or inf")
        return Objective("readout", f"u · {where}, u from {path}", u.astype(np.float32), position=position)
    raise InputError(f"--objective {spec!r}: unknown; valid choices: {', '.join(KINDS)}")


def _pooled(model, text: str) -> np.ndarray:
    from ..compiler import compile

    prog = model.program(pool="mean")
    k = compile(prog, "sum_product", wrt=[])
    return np.asarray(k(**model.inputs(model.tokenize(text), readout=np.ones(model.hidden, np.float32)))
                      .value("pooled"))


def _mlm(model, spec: str, arg: str) -> Objective:
    if not getattr(model, "has_mlm_head", False):
        raise OptionError(f"--objective {spec!r}: the model has no masked-LM head (a BertForMaskedLM folder, with "
                          "cls.predictions.* weights)")
    words = [w.strip() for w in arg.split(",")]
    if not 1 <= len(words) <= 2 or not all(words):
        raise InputError(f"--objective {spec!r}: give mlm:TOKEN or mlm:TOKEN,TOKEN (a logit difference)")
    vocab = model.tokenizer.get_vocab()
    for w in (*words, "[MASK]"):
        if w not in vocab:
            raise InputError(f"--objective {spec!r}: {w!r} is not a token of the model's vocabulary")
    rows, bias = model.mlm_rows([vocab[w] for w in words])
    if len(words) == 1:
        return Objective("mlm", f"masked-LM logit of {words[0]!r} at the [MASK] token", rows[0],
                         offset=float(bias[0]), head="masked_lm", position=None, mask_id=vocab["[MASK]"])
    return Objective("mlm", f"masked-LM logit of {words[0]!r} minus that of {words[1]!r} at the [MASK] token",
                     rows[0], rows[1], float(bias[0] - bias[1]), head="masked_lm", position=None,
                     mask_id=vocab["[MASK]"])


def save_probe(path: str | Path, w, b, mu=None, sd=None, position: int = 0, pool: str | None = None) -> Path:
    """A linear probe for ``probe:FILE.npz``: logits ``((h − mu)/sd) @ w + b`` on the final state at
    ``position`` (or mean-pooled with ``pool="mean"``); ``w`` is [hidden, classes]."""
    w = np.asarray(w, np.float64)
    H = w.shape[0]
    np.savez(path, w=w, b=np.asarray(b, np.float64), mu=np.zeros(H) if mu is None else np.asarray(mu, np.float64),
             sd=np.ones(H) if sd is None else np.asarray(sd, np.float64), position=np.int64(position),
             pool=np.str_(pool or ""))
    return Path(path)


def train_probe(model, texts: list[str], labels, path: str | Path, position: int = 0, pool: str | None = None,
                epochs: int = 40, seed: int = 0, val_fraction: float = 0.2) -> dict:
    """Train a linear probe with :mod:`semir.train` on standardised final states and save it for
    ``probe:FILE.npz``; returns the training result's accuracies."""
    from ..compiler import compile
    from ..train import Adam, train
    from ..train.models import LinearProbe

    y = np.asarray(labels, np.int64)
    if len(y) != len(texts) or len(y) < 4:
        raise InputError(f"train_probe: need a label per sentence and at least 4 sentences, got {len(texts)} "
                         f"sentences and {len(y)} labels")
    k = compile(model.program(pool=pool, position=position), "sum_product", wrt=[])
    one = np.ones(model.hidden, np.float32)
    X = np.stack([k(**model.inputs(model.tokenize(t), readout=one)).value("pooled" if pool else "final")
                  for t in texts]).astype(np.float64)
    split = max(1, int(round(len(y) * (1 - val_fraction))))
    mu, sd = X[:split].mean(0), X[:split].std(0) + 1e-6
    Z = ((X - mu) / sd).astype(np.float32)
    probe = LinearProbe(model.hidden, int(y.max()) + 1, seed=seed)
    val = (Z[split:], y[split:]) if split < len(y) else None
    res = train(probe.logits_program(), probe.params, Z[:split], y[:split], optimizer=Adam(1e-2), epochs=epochs,
                batch_size=64, seed=seed, val=val, progress=False)
    save_probe(path, res.params["w"], res.params["b"], mu, sd, position, pool)
    return {"val_accuracy": res.final_val_accuracy, "path": str(path)}


def _probe(model, spec: str, arg: str) -> Objective:
    file, _, classes = arg.partition(":")
    try:
        with np.load(file, allow_pickle=False) as z:
            p = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"--objective {spec!r}: cannot read {file!r} ({e}); semir.analysis.objectives."
                         "save_probe writes one") from None
    missing = [k for k in ("w", "b", "mu", "sd", "position", "pool") if k not in p]
    if missing:
        raise InputError(f"--objective {spec!r}: {file} lacks {', '.join(missing)} (write it with save_probe)")
    w, b = p["w"], p["b"]
    C = w.shape[1] if w.ndim == 2 else 0
    if w.shape != (model.hidden, C) or b.shape != (C,) or C < 1:
        raise InputError(f"--objective {spec!r}: w must be [{model.hidden}, classes] and b [classes], got "
                         f"{w.shape} and {b.shape}")
    if not classes:
        if C != 2:
            raise InputError(f"--objective {spec!r}: the probe has {C} classes; choose with :A-B or :A")
        classes = "1-0"
    parts = classes.split("-")
    if not all(c.isdigit() and int(c) < C for c in parts) or len(parts) > 2:
        raise InputError(f"--objective {spec!r}: classes must be A or A-B with A, B in 0..{C - 1}")
    idx = [int(c) for c in parts]
    sd, mu = p["sd"], p["mu"]
    if not np.all(sd > 0):
        raise InputError(f"--objective {spec!r}: sd must be positive")
    pool = str(p["pool"]) or None
    pos = int(p["position"])
    read = [(w[:, c] / sd).astype(np.float32) for c in idx]
    offset = float(sum(s * (b[c] - mu @ (w[:, c] / sd)) for s, c in zip((1, -1), idx)))
    on = "the mean-pooled final hidden states" if pool else f"the final hidden state at position {pos}"
    what = f"logit {idx[0]} minus logit {idx[1]}" if len(idx) == 2 else f"logit {idx[0]}"
    exact = {"mu": mu.astype(np.float64), "sd": sd.astype(np.float64), "w": w[:, idx].astype(np.float64),
             "b": b[idx].astype(np.float64), "sign": np.array([1.0, -1.0][:len(idx)])}
    return Objective("probe", f"linear probe {file}: {what}, on {on}", read[0], read[1] if len(read) == 2 else None,
                     offset, pool=pool, position=pos, probe=exact)

"""Record the paper engine's own numbers for tests/test_brunoflow_engine.py.

This script is not part of the test suite, and it contains no brunoflow code: it builds each case with
brunoflow's public API and writes what brunoflow computes to ``brunoflow_749f15b.json``. To run it, unpack
brunoflow (https://github.com/kdu4108/brunoflow, commit 749f15b; its licence is non-commercial) into a
scratch directory outside this repository and use a scratch venv:

    python -m venv /tmp/bf && /tmp/bf/bin/pip install "jax==0.4.13" "jaxlib==0.4.13" "numpy<2" "scipy<1.12" \
        graphviz colorama networkx "torch==2.13.0"
    cd /path/to/brunoflow-checkout && /tmp/bf/bin/python /path/to/semir/tests/data/record_brunoflow.py OUT.json

Every case is float64 (``jax_enable_x64``). For each leaf the file holds brunoflow's ``grad``, the max and
min path products (``max_grad_of_output_wrt_node``, ``max_neg_grad_of_output_wrt_node``), the sum of
absolute path products (``abs_val_grad``) and the entropy (``compute_entropy``).
"""

import json
import sys

import jax

jax.config.update("jax_enable_x64", True)
import brunoflow as bf  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def leaves(**arrays):
    return {k: bf.Node(jnp.array(np.asarray(v, dtype=np.float64)), name=k) for k, v in arrays.items()}


def rng(seed):
    return np.random.default_rng(seed)


@case
def f1_matmul_fanout():
    L = leaves(t=[[1.0]], w=[[2.0, -3.0]])
    v = L["t"] @ L["w"]
    return L, bf.reduce_sum(v * v + v)


@case
def f2_reduce_max():
    L = leaves(x=[1.0, 2.0], c=[-1.0, -1.0])
    return L, bf.reduce_sum(L["x"] * L["c"]) + bf.reduce_max(L["x"])


@case
def f3_softmax():
    L = leaves(x=[0.3, -0.2], u=[1.0, -2.0])
    return L, bf.reduce_sum(bf.softmax(L["x"], axis=0) * L["u"])


def layernorm(L, x, g, b, eps):
    """brunoflow's own LayerNorm module, its parameters being the leaves ``g`` and ``b`` of ``L``."""
    ln = bf.net.LayerNorm(x.shape[-1], eps=eps)
    ln.weight = L[g] = bf.Parameter(L[g].val, name=g)
    ln.bias = L[b] = bf.Parameter(L[b].val, name=b)
    return ln(x)


@case
def f4_layernorm():
    r = rng(4)
    L = leaves(x=r.normal(size=(2, 4)), g=1 + 0.1 * r.normal(size=4), b=0.1 * r.normal(size=4),
               u=r.normal(size=4))
    return L, bf.reduce_sum(layernorm(L, L["x"], "g", "b", 1e-5) * L["u"])


@case
def f5_gelu():
    L = leaves(x=[0.5, -1.2, 2.0], u=[1.0, -0.5, 0.25])
    return L, bf.reduce_sum(bf.gelu(L["x"]) * L["u"])


@case
def fig1():
    L = leaves(x=1.0, y=2.0)
    x, y = L["x"], L["y"]
    return L, bf.exp(x) + (x - y) * y


def mlp(act, seed):
    r = rng(seed)
    L = leaves(x=r.normal(size=(3, 4)), w1=r.normal(size=(4, 5)) / 2, b1=0.1 * r.normal(size=5),
               w2=r.normal(size=(5, 2)) / 2, b2=0.1 * r.normal(size=2), u=r.normal(size=2))
    h = act(L["x"] @ L["w1"] + L["b1"])
    return L, bf.reduce_sum((h @ L["w2"] + L["b2"]) * L["u"])


@case
def tanh_mlp():
    return mlp(bf.tanh, 7)


@case
def relu_mlp():
    return mlp(bf.relu, 8)


@case
def broadcast_fanout():
    r = rng(9)
    L = leaves(x=r.normal(size=(3, 2)), b=r.normal(size=2), c=r.normal(size=(3, 2)))
    h = L["x"] + L["b"]
    return L, bf.reduce_sum(h * h * L["c"] + h)


@case
def attention_residual():
    r = rng(10)
    S, D = 4, 6
    L = leaves(h=r.normal(size=(S, D)), wq=r.normal(size=(D, D)) / 3, wk=r.normal(size=(D, D)) / 3,
               wv=r.normal(size=(D, D)) / 3, wo=r.normal(size=(D, D)) / 3, u=r.normal(size=D))
    h = L["h"]
    q, k, v = h @ L["wq"], h @ L["wk"], h @ L["wv"]
    p = bf.softmax(q @ bf.matrix_transpose(k) / 2.0, axis=-1)
    out = h + (p @ v) @ L["wo"]
    return L, bf.reduce_sum(out[0] * L["u"])


@case
def bert_layer():
    r = rng(11)
    S, H, A, F = 4, 8, 2, 12
    D = H // A
    L = leaves(h=r.normal(size=(S, H)), u=r.normal(size=H),
               **{f"w{p}": r.normal(size=(H, H)) / np.sqrt(H) for p in "qkvo"},
               **{f"b{p}": 0.1 * r.normal(size=H) for p in "qkvo"},
               g1=1 + 0.1 * r.normal(size=H), be1=0.1 * r.normal(size=H),
               w1=r.normal(size=(H, F)) / np.sqrt(H), b1=0.1 * r.normal(size=F),
               w2=r.normal(size=(F, H)) / np.sqrt(F), b2=0.1 * r.normal(size=H),
               g2=1 + 0.1 * r.normal(size=H), be2=0.1 * r.normal(size=H))
    h = L["h"]

    def heads(x):
        return bf.transpose(bf.reshape(x, (S, A, D)), (1, 0, 2))

    q, k, v = (heads(h @ L[f"w{p}"] + L[f"b{p}"]) for p in "qkv")
    p = bf.softmax(q @ bf.transpose(k, (0, 2, 1)) / float(np.sqrt(D)), axis=-1)
    ctx = bf.reshape(bf.transpose(p @ v, (1, 0, 2)), (S, H))
    h1 = layernorm(L, h + (ctx @ L["wo"] + L["bo"]), "g1", "be1", 1e-12)
    ffn = bf.gelu(h1 @ L["w1"] + L["b1"]) @ L["w2"] + L["b2"]
    h2 = layernorm(L, h1 + ffn, "g2", "be2", 1e-12)
    return L, bf.reduce_sum(h2[0] * L["u"])


@case
def zero_in_matmul():
    L = leaves(x=[[1.0, 0.0]], w=[[2.0, -1.0], [0.5, 3.0]])
    return L, bf.reduce_sum(bf.tanh(L["x"] @ L["w"]))


def record(name, fn):
    L, out = fn()
    out.backprop(values_to_compute=("grad", "max_grad", "abs_val_grad", "entropy"))
    doc = {"output": float(out.val), "inputs": {}, "leaves": {}}
    for k, node in L.items():
        doc["inputs"][k] = np.asarray(node.val).tolist()
        doc["leaves"][k] = {
            "grad": np.asarray(node.grad).tolist(),
            "max": np.asarray(node.max_grad_of_output_wrt_node[0]).tolist(),
            "min": np.asarray(node.max_neg_grad_of_output_wrt_node[0]).tolist(),
            "abs_val_grad": np.asarray(node.abs_val_grad).tolist(),
            "entropy": [str(v) if not np.isfinite(v) else v for v in np.ravel(node.compute_entropy().val)],
        }
    return doc


if __name__ == "__main__":
    out = {"brunoflow": "kdu4108/brunoflow 749f15b", "jax": jax.__version__, "dtype": "float64",
           "cases": {name: record(name, fn) for name, fn in CASES.items()}}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1, allow_nan=False)

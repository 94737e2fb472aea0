"""The CUDA backend's kernel: device plans (memory allocated once per shape binding), calls, results."""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path

import numpy as np
from semir.backends.numba import cache
from semir.backends.numba import codegen as cpu_codegen
from semir.backends.numba.kernel import Plan, build_result

from semir.errors import InputError, OptionError
from semir.ir.index_maps import row_index
from semir.ir.node import Program
from semir.ir.ops import STRUCTURED, Op
from semir.runtime import bind_inputs
from semir.semirings import Semiring

from . import codegen, launch, templates


@functools.cache
def _digest() -> str:
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()


def _csr(target: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of a many-to-one map: for each j < n, the positions i with target[i] == j, in increasing i."""
    target = np.asarray(target, dtype=np.int64)
    keep = np.nonzero(target >= 0)[0]
    order = keep[np.argsort(target[keep], kind="stable")]
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(target[keep], minlength=n), out=ptr[1:])
    return ptr, np.ascontiguousarray(order, dtype=np.int64)


def _groups(off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batches grouped by the operand block they share, as CSR (block ptr, batch ids in increasing order)."""
    _, inverse = np.unique(off, return_inverse=True)
    return _csr(inverse, int(inverse.max()) + 1 if len(inverse) else 0)


class DevicePlan:
    """Device arrays for one binding of the symbolic dims: values, states, index maps. Allocated once."""

    def __init__(self, prog: Program, a: cpu_codegen.Analysis, plan: Plan, sr: Semiring, fdt: np.dtype):
        from numba import cuda

        up = cuda.to_device
        self.V = []
        for k, n in enumerate(prog.nodes):
            if n.op is Op.const:
                self.V.append(up(plan.evaluate(k, [])))
            else:
                self.V.append(cuda.device_array(plan.size[k], dtype=plan.dtype[k]))
        tail = (sr.k,) if sr.k else ()
        self.D = {}
        for name in sorted(a.needed, key=plan.index.get):
            k = plan.index[name]
            self.D[k] = {f.name: cuda.device_array((plan.size[k],) + tail, dtype=sr.field_dtype(f, fdt))
                         for f in sr.fields}
        self.bmap = {key: up(m) for key, m in plan.bmap.items()}
        self.bcsr = {}
        for gid, members in enumerate(a.groups):
            for m in members:
                for name in prog.nodes[m].inputs:
                    u = plan.index[name]
                    if u not in members and plan.shape[u] != plan.shape[members[-1]]:
                        jmap = plan.bmap.get((gid, u), np.zeros(plan.group_size[gid], np.int64))
                        self.bcsr[(gid, u)] = tuple(up(x) for x in _csr(jmap, plan.size[u]))
        self.map = {k: [up(np.ascontiguousarray(m, dtype=np.int64)) for m in ms] for k, ms in plan.map.items()}
        self.rows, self.outmap, self.aux, self.nrows, self.colcsr, self.take = {}, {}, {}, {}, {}, {}
        self.mm, self.mm_grid, self.mm_groups, self.mm_bwd_grid = {}, {}, {}, {}
        self.fdt, self.tiles = fdt, (launch.TILE, launch.tile_for(sr, fdt))  # forward, backward contractions
        for k, n in enumerate(prog.nodes):
            if n.op in STRUCTURED:
                DEVICE_DATA[n.op](self, k, n, plan)


# -- device data per structured op (beside the host plan's tables) -----------------------------------------

def _up(x):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(x))


def _empty(size, dtype):
    from numba import cuda

    return cuda.device_array(size, dtype=dtype)


def _reduce_rows(G: DevicePlan, k: int, n, plan: Plan) -> None:
    src = plan.shape[plan.index[n.inputs[0]]]
    G.rows[k] = _up(np.asarray(row_index(np.empty(src), plan.attrs[k]["axes"]), dtype=np.int64))


def _reduce_data(G: DevicePlan, k: int, n, plan: Plan) -> None:
    _reduce_rows(G, k, n, plan)
    G.outmap[k] = _up(np.asarray(plan.outmap[k], dtype=np.int64))


def _max_data(G: DevicePlan, k: int, n, plan: Plan) -> None:
    _reduce_rows(G, k, n, plan)
    G.aux[k] = _empty(plan.size[k], np.int64)  # the argmax of each output element, written by the forward


def _softmax_data(G: DevicePlan, k: int, n, plan: Plan) -> None:
    outer, _, inner = plan.rowsplit[k]
    G.nrows[k] = outer * inner


def _layernorm_data(G: DevicePlan, k: int, n, plan: Plan) -> None:
    G.aux[k] = (_empty(plan.size[k], G.fdt), _empty(plan.rows[k], G.fdt))  # xhat and 1/σ, per call
    G.colcsr[k] = tuple(_up(x) for x in _csr(plan.colmap[k], plan.n[k]))


def _take_data(G: DevicePlan, k: int, n, plan: Plan) -> None:
    G.take[k] = (_empty(plan.size[k], np.int64), _empty(plan.size[plan.index[n.inputs[0]]] + 1, np.int64),
                 _empty(plan.size[k], np.int64))  # gather map and its CSR inverse, from each call's ids


def _matmul_data(G: DevicePlan, k: int, n, plan: Plan) -> None:
    a_off, b_off, y_off, M, K, N = plan.mm[k]
    T, Tb = G.tiles
    G.mm[k] = (_up(a_off), _up(b_off), _up(y_off))
    G.mm_grid[k] = (-(-N // T), -(-M // T), len(y_off))
    ga, gb = _groups(a_off), _groups(b_off)
    G.mm_groups[k] = (tuple(_up(x) for x in ga), tuple(_up(x) for x in gb))
    G.mm_bwd_grid[k] = ((-(-K // Tb), -(-M // Tb), len(ga[0]) - 1), (-(-N // Tb), -(-K // Tb), len(gb[0]) - 1))


def _movement_data(G: DevicePlan, k: int, n, plan: Plan) -> None:
    """Nothing beyond ``G.map``: the host plan's movement maps are uploaded for every op that has one."""


DEVICE_DATA = {
    Op.sum: _reduce_data, Op.mean: _reduce_data, Op.max: _max_data,
    Op.softmax: _softmax_data, Op.log_softmax: _softmax_data, Op.layernorm: _layernorm_data,
    Op.matmul: _matmul_data,
    Op.transpose: _movement_data, Op.reshape: _movement_data, Op.index: _movement_data, Op.concat: _movement_data,
    Op.take: _take_data,
}


class CudaKernel:
    backend = "cuda"

    def __init__(self, prog: Program, semiring: Semiring, wrt: tuple[str, ...], granularity: str,
                 allow_nonfinite: bool = False):
        from numba import cuda

        if not cuda.is_available():
            raise OptionError("backend 'cuda' needs an NVIDIA GPU with a working driver (numba.cuda.is_available() "
                              "is False); to run the kernels in numba's CUDA simulator instead, start Python with "
                              "NUMBA_ENABLE_CUDASIM=1")
        for n in prog.nodes:
            if n.op is Op.take and prog.by_name[n.inputs[1]].op is not Op.input:
                raise OptionError(f"backend 'cuda': the ids of take node {n.name!r} must be a program input "
                                  "(they are range-checked and inverted on the host at the start of a call)")
        self.program, self.semiring, self.wrt = prog, semiring, wrt
        self.granularity, self.allow_nonfinite = granularity, allow_nonfinite
        from semir.backends.reference.backend import float_dtype_of

        self.float_dtype = np.dtype(float_dtype_of(prog))
        self.analysis = cpu_codegen.analyse(prog, wrt)
        sim = f"sim={launch.SIMULATOR}"
        sr_source = templates.instantiate(semiring, self.float_dtype, launch.tile_for(semiring, self.float_dtype))
        self.sr_name = f"semir_cusr_{cache.key(sr_source, sim, _digest())}"
        self.sr, _ = cache.load(self.sr_name, lambda: sr_source)
        ir = prog.format()
        self.module_name = f"semir_cuda_{cache.key(ir, self.sr_name, repr(wrt), granularity, sim, _digest())}"
        self.module, self.generated = cache.load(
            self.module_name, lambda: codegen.generate(prog, wrt, semiring, self.sr_name)[0])
        self.plans: dict[tuple, tuple[Plan, DevicePlan]] = {}
        # A DevicePlan's buffers hold one call's values and states: calls of one kernel take turns on them.
        self._lock = threading.RLock()

    def plan(self, env: dict[str, int]) -> tuple[Plan, DevicePlan]:
        key = tuple(sorted(env.items()))
        if key not in self.plans:
            host = Plan(self.program, self.analysis, env, self.semiring, self.float_dtype)
            self.plans[key] = host, DevicePlan(self.program, self.analysis, host, self.semiring, self.float_dtype)
        return self.plans[key]

    def _forward(self, inputs: dict) -> tuple[Plan, DevicePlan]:
        arrays, env = bind_inputs(self.program, inputs, self.allow_nonfinite)
        plan, G = self.plan(env)
        plan = plan.for_call()
        for n in self.program.inputs:  # host -> device, once per call
            k = plan.index[n.name]
            G.V[k].copy_to_device(np.ascontiguousarray(arrays[n.name], dtype=plan.dtype[k]).reshape(-1))
        for k, (gmap, ptr, idx) in G.take.items():
            n = self.program.nodes[k]
            m = plan.take_map(k, np.asarray(arrays[n.inputs[1]]))
            plan.aux[k] = m
            p, i = _csr(m, plan.size[plan.index[n.inputs[0]]])
            gmap.copy_to_device(m)
            ptr.copy_to_device(p)
            idx.copy_to_device(i)
        self.module.forward(G, plan)
        return plan, G

    def forward(self, **inputs) -> np.ndarray:
        with self._lock:
            plan, G = self._forward(inputs)
            k = plan.index[self.program.output]
            return G.V[k].copy_to_host().reshape(plan.shape[k])

    def __call__(self, **inputs):
        with self._lock:
            return self._call(inputs)

    def _call(self, inputs: dict):
        from . import forward_kernels as FK

        sr, fdt = self.semiring, self.float_dtype
        plan, G = self._forward(inputs)
        for fields in G.D.values():
            for f in sr.fields:
                arr = fields[f.name].reshape(-1)
                FK.fill[launch.blocks(arr.size), launch.TPB](arr, f.zero)
        out = plan.index[self.program.output]
        if out in G.D:
            for f, host in sr.ones((plan.size[out],), fdt).items():
                G.D[out][f].copy_to_device(np.ascontiguousarray(host))
        self.module.backward(G, plan)
        V = [G.V[k].copy_to_host() for k in range(len(self.program.nodes))]  # device -> host, once per call
        D = {k: {f: a.copy_to_host() for f, a in fields.items()} for k, fields in G.D.items()}
        return build_result(self, V, D, plan)

    def emit(self, what: str) -> str:
        if what == "python":
            return cache.source(self.module_name) + "\n\n" + cache.source(self.sr_name)
        if what == "ptx":
            return self._ptx()
        raise InputError(f"--emit {what} is not available on the cuda backend (choose ir, python or ptx)")

    def _ptx(self) -> str:
        """PTX of every kernel, after one run on small random inputs to fix their argument types."""
        if launch.SIMULATOR:
            raise OptionError("--emit ptx needs a real GPU: numba's CUDA simulator runs kernels as Python and "
                              "compiles no PTX (unset NUMBA_ENABLE_CUDASIM)")
        from semir.backends.numba.kernel import NumbaKernel

        self(**NumbaKernel._sample_inputs(self.program))
        from . import forward_kernels as FK

        out = []
        for mod in (self.module, self.sr, FK):
            for name in sorted(vars(mod)):
                fn = getattr(mod, name)
                if hasattr(fn, "inspect_asm") and getattr(fn, "overloads", None):
                    for sig, text in fn.inspect_asm().items():
                        out.append(f"// ---- {mod.__name__}.{name}{sig}\n{text}")
        return "\n".join(out)


def compile_cuda(prog: Program, semiring: Semiring, wrt: tuple[str, ...], granularity: str,
                 allow_nonfinite: bool = False, semantics: str = "exact") -> CudaKernel:
    if semantics != "exact":
        raise OptionError(f"semantics={semantics!r} for {semiring.name} runs on the reference and numba backends, "
                          "not cuda")
    return CudaKernel(prog, semiring, wrt, granularity, allow_nonfinite)

"""Per-token statistics of gradient flow: entropy and log Z aggregated over the hidden dimension (Eq. 3)."""

from __future__ import annotations

import numpy as np

from ..compiler import compile


def token_stats(model, ids, readout, position: int = 0, node: str = "embeddings",
                backend: str | None = None, objective=None) -> list[dict]:
    """Per position: entropy and log Z of the paths from the token's vector at ``node``, and the gradient norm.
    The output is ``readout · h_final[position]``, or the ``objective`` (:mod:`.objectives`) where given."""
    if objective is not None:
        prog, ins = objective.program(model, position), objective.single_inputs(model, ids)
    else:
        prog, ins = model.program(position=position), model.inputs(ids, readout=readout)
    ent = compile(prog, "entropy", backend=backend, wrt=[node])(**ins)
    grad = compile(prog, "sum_product", backend=backend, wrt=[node])(**ins)[node]
    state = ent.aggregate_state(node, -1)
    tokens = model.tokens(ids)
    return [{"position": t, "token": tokens[t], "entropy": float(ent.semiring.finalize(state)[t]),
             "log_z": float(state["logz"][t]), "grad_norm": float(np.linalg.norm(grad[t]))}
            for t in range(len(tokens))]

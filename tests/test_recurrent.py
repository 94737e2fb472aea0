"""LSTM/GRU language models from PyTorch-layout npz weights: forward and gradients vs torch.nn."""

import numpy as np
import pytest

import semir

torch = pytest.importorskip("torch")


def save(tmp_path, kind, V=7, E=4, H=5, seed=0):
    torch.manual_seed(seed)
    rnn = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(E, H)
    emb, dec = torch.nn.Embedding(V, E), torch.nn.Linear(H, V)
    arrays = {k: v.detach().numpy() for k, v in rnn.state_dict().items()}
    arrays.update(embedding=emb.weight.detach().numpy(), decoder=dec.weight.detach().numpy(),
                  decoder_bias=dec.bias.detach().numpy())
    np.savez(tmp_path / f"{kind}.npz", **arrays)
    return rnn, emb, dec


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_recurrent_matches_torch(tmp_path, kind, backend):
    rnn, emb, dec = save(tmp_path, kind)
    m = semir.models.load_recurrent(tmp_path / f"{kind}.npz", kind)
    ids = np.array([1, 4, 2, 6, 0])
    prog = m.program(len(ids), target=3)
    gates = ("input_gate", "forget_gate", "cell_gate", "output_gate") if kind == "lstm" else (
        "reset_gate", "update_gate", "candidate")
    for g in gates:
        assert f"step2.{g}" in prog
    r = semir.compile(prog, "sum_product", backend=backend, wrt=["embeddings"])(**m.inputs(ids))
    x = emb(torch.tensor(ids)).detach().requires_grad_(True)
    out, _ = rnn(x[:, None, :])
    for t in range(len(ids)):
        np.testing.assert_allclose(r.value(f"step{t}.hidden"), out[t, 0].detach().numpy(), rtol=1e-5, atol=1e-6)
    logp = torch.log_softmax(dec(out[-1, 0]), dim=-1)[3]
    assert float(r.output) == pytest.approx(float(logp), rel=1e-5)
    logp.backward()
    np.testing.assert_allclose(r["embeddings"], x.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_bad_npz(tmp_path):
    np.savez(tmp_path / "w.npz", embedding=np.zeros((3, 2)))
    with pytest.raises(semir.OptionError, match="missing arrays weight_ih_l0"):
        semir.models.load_recurrent(tmp_path / "w.npz")
    with pytest.raises(semir.OptionError, match="valid choices: lstm, gru"):
        semir.models.load_recurrent(tmp_path / "w.npz", "rnn")

"""The reduced experiments run end to end and reproduce the findings they claim (issue 7)."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from semir.cli import main  # noqa: E402


def test_fig1_every_semiring_and_path(tmp_path):
    assert main(["experiment", "fig1", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "fig1.json").read_text())
    assert (tmp_path / "fig1.png").stat().st_size > 0 and (tmp_path / "fig1.csv").exists()
    # paths by hand: x -> x2 (e^x) and x -> x3 -> x4 (1 * y); y -> x3 -> x4 (-1 * y) and y -> x4 (x - y)
    assert sorted(p["product"] for p in s["paths"]["x"]) == pytest.approx(sorted([np.e, 2.0]))
    assert sorted(p["product"] for p in s["paths"]["y"]) == pytest.approx([-2.0, -1.0])
    for row in s["values"]:
        assert row["value"] == pytest.approx(row["by_definition"], rel=1e-9), row


def test_sec51_transformer_branch_flow(tmp_path):
    assert main(["experiment", "sec51", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "sec51.json").read_text())
    assert (tmp_path / "sec51.png").stat().st_size > 0
    assert s["val_accuracy"] >= 0.99
    cats = s["categories"]
    # Reproduced: the repeat token carries by far the strongest max-product flow of the non-first tokens,
    # and it flows through the attention branches (a non-first token reaches the classifier only there).
    total = {c: sum(cats[c][f"mean_value_{b}"] for b in ("query", "key", "value")) for c in cats}
    assert total["repeat token"] > 3 * total["other tokens"]
    assert cats["repeat token"]["argmax_skip"] == 0.0 and cats["other tokens"]["argmax_skip"] == 0.0
    # Under exact semantics the first token's best path is its own skip connection (the classifier reads
    # its final state), not its query as in the paper: docs/REPRODUCTION.md discusses the difference.
    assert cats["first token"]["argmax_skip"] > 0.9


def test_mlp_entropy_rises_with_hidden_size(tmp_path):
    assert main(["experiment", "mlp-hidden", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "mlp_hidden.json").read_text())["rows"]
    assert all(r["val_accuracy"] >= 0.95 for r in rows)
    rel = [r["entropy_relevant"] for r in rows]
    assert rel == sorted(rel) and rel[-1] > rel[0] + 1.0  # rises with hidden size (4 -> 16 -> 64)
    assert all(r["entropy_relevant"] > r["entropy_irrelevant"] for r in rows)  # relevant feature higher


def test_sec51_under_brunoflow_semantics_gives_the_papers_pattern(tmp_path):
    # The paper engine's semantics (sums inside matmul / broadcast / lookup, decomposed softmax) turns the
    # pattern into the paper's: queries for the first token, keys for the others, strongest for the repeat.
    assert main(["experiment", "sec51", "--semantics", "brunoflow", "--out", str(tmp_path)]) == 0
    cats = json.loads((tmp_path / "sec51_brunoflow.json").read_text())["categories"]
    assert cats["first token"]["argmax_query"] > 0.9
    assert cats["other tokens"]["argmax_key"] > 0.9 and cats["repeat token"]["argmax_key"] > 0.9
    assert cats["repeat token"]["mean_value_key"] > 3 * cats["other tokens"]["mean_value_key"]

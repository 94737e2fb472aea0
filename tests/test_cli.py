"""The ``semir`` command: CONTRACT §4 surfaces, and user errors exit 2 without a traceback."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import EXAMPLES

from semir.cli import main

FIG1 = str(EXAMPLES / "paper_fig1.semir")
SEMIRINGS = ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:3"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_run_json_every_semiring(capsys, semiring):
    code, out, err = run(capsys, "run", FIG1, "--semiring", semiring, "--input", "x=1", "--input", "y=2",
                         "--json", "--backend", "reference")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= {"semiring", "backend", "output", "wrt"}
    assert doc["semiring"] == semiring and doc["backend"] == "reference"
    assert doc["output"] == pytest.approx(math.e + (1 - 2) * 2)  # e^x + (x - y) y
    assert set(doc["wrt"]) == {"x", "y"}
    if semiring == "sum_product":
        assert doc["wrt"]["x"] == pytest.approx(math.e + 2) and doc["wrt"]["y"] == pytest.approx(-3)


def test_run_path_and_wrt_internal_node(capsys):
    code, out, err = run(capsys, "run", FIG1, "--semiring", "max_product", "--input", "x=1", "--input", "y=2",
                         "--wrt", "x", "x3", "--path", "y", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc["wrt"]) == {"x", "x3", "y"}  # a --path node is computed too
    steps = doc["paths"]["y[]"]
    assert [s[0] for s in steps] == ["y", "x4", "output"] and math.prod(s[2] for s in steps) == pytest.approx(-1)


@pytest.mark.parametrize("pointers", ["eager", "lazy"])
def test_run_pointers_policy_gives_one_path(capsys, pointers):
    code, out, err = run(capsys, "run", FIG1, "--semiring", "max_product", "--input", "x=1", "--input", "y=2",
                         "--path", "y", "--path", "x", "--json", "--pointers", pointers)
    assert code == 0, err
    doc = json.loads(out)
    assert [s[0] for s in doc["paths"]["y[]"]] == ["y", "x4", "output"]
    assert [s[0] for s in doc["paths"]["x[]"]][0] == "x"


def test_run_lazy_pointers_refused_for_max_abs(capsys):
    code, _, err = run(capsys, "run", FIG1, "--semiring", "max_abs", "--input", "x=1", "--input", "y=2",
                       "--pointers", "lazy")
    assert code == 2 and "pointers='lazy'" in err and "Traceback" not in err


def test_run_inputs_npz_and_out(tmp_path, capsys):
    model = str(EXAMPLES / "mlp.semir")
    rng = np.random.default_rng(0)
    ins = {"x": rng.normal(size=(2, 4)), "w1": rng.normal(size=(4, 8)), "b1": rng.normal(size=8),
           "w2": rng.normal(size=(8, 1)), "b2": rng.normal(size=1)}
    np.savez(tmp_path / "in.npz", **ins)
    code, out, err = run(capsys, "run", model, "--semiring", "entropy", "--inputs", str(tmp_path / "in.npz"),
                         "--wrt", "x", "--out", str(tmp_path / "out.npz"))
    assert code == 0, err
    assert "x = " in out
    saved = np.load(tmp_path / "out.npz")
    assert saved["value/x"].shape == (2, 4) and "state/x/logz" in saved.files


def test_check_ir_compile(capsys):
    code, out, _ = run(capsys, "check", str(EXAMPLES / "transformer_layer.semir"))
    assert code == 0 and "ok" in out
    code, out, _ = run(capsys, "ir", FIG1, "--after", "all")
    assert code == 0 and out.count("// ---- after") == 7
    code, out, _ = run(capsys, "ir", FIG1, "--after", "fold")
    assert code == 0 and out.startswith("func f(")
    code, out, _ = run(capsys, "ir", str(EXAMPLES / "transformer_layer.semir"), "--granularity", "decomposed",
                       "--after", "decompose")
    assert code == 0 and "softmax(" not in out and "erf(" in out
    code, out, _ = run(capsys, "compile", FIG1, "--semiring", "entropy", "--emit", "ir")
    assert code == 0 and "exp(x)" in out


@pytest.mark.parametrize("argv,needle", [
    (["run", FIG1, "--semiring", "max_prodct", "--input", "x=1", "--input", "y=2"], "did you mean 'max_product'"),
    (["run", FIG1, "--input", "x=abc", "--input", "y=2"], "cannot read 'abc'"),
    (["run", FIG1, "--input", "x=1"], "missing input 'y'"),
    (["run", FIG1, "--input", "x=1", "--input", "y=2", "--input", "z=3"], "unexpected input 'z'"),
    (["run", FIG1, "--input", "x=[1, 2]", "--input", "y=2"], "expected f64, got int64 array of shape (2,)"),
    (["run", FIG1, "--input", "x=1", "--input", "y=2", "--backend", "gpu"], "unknown backend 'gpu'"),
    (["run", FIG1, "--input", "x=1", "--input", "y=2", "--wrt", "q"], "wrt: unknown node 'q'"),
    (["run", FIG1, "--input", "x=1", "--input", "y=2", "--path", "x"], "does not record paths"),
    (["run", "no/such/file.semir"], "cannot read model file"),
    (["ir", FIG1, "--after", "fusion"], "unknown pass 'fusion'"),
    (["run", FIG1, "--input", "x=NaN", "--input", "y=2"], "contains NaN"),
    (["run", FIG1, "--input", "x=1", "--input", "y=2", "--path", "y[-]"], "integer indices"),
    (["run", FIG1, "--input", "x=" + "9" * 5000, "--input", "y=2"], "cannot read '999"),
    (["run", FIG1, "--input", "x=" + "[" * 100_000 + "]" * 100_000, "--input", "y=2"], "nested too deeply"),
    (["run", FIG1, "--input", "x=1e400", "--input", "y=2"], "contains inf"),
    (["run", FIG1, "--entry", "nope", "--input", "x=1"], "no def named 'nope'"),
    (["run", FIG1, "--semiring", "topk:+3", "--input", "x=1", "--input", "y=2"], "topk:K"),
    (["run", FIG1, "--input", "x=1", "--input", "y=2", "--out", "/no/such/dir/out.npz"], "does not exist"),
])
def test_user_errors_exit_2_with_one_message(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3


def test_syntax_error_from_the_installed_command(tmp_path):
    bad = tmp_path / "bad.semir"
    bad.write_text("def f(x: f64) -> f64 {\n  y = exp(x)) \n  return y\n}\n")
    p = subprocess.run([sys.executable, "-m", "semir.cli", "check", str(bad)], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.startswith(f"{bad}:2:13: error: unexpected ')'")
    assert "Traceback" not in p.stderr


def test_input_and_output_file_errors_exit_2(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones(2))
    code, _, err = run(capsys, "run", FIG1, "--inputs", str(tmp_path / "x.npy"))
    assert code == 2 and "expected an .npz file" in err and "Traceback" not in err
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    code, _, err = run(capsys, "run", FIG1, "--inputs", str(tmp_path / "bad.npz"))
    assert code == 2 and "cannot read inputs" in err
    code, _, err = run(capsys, "run", FIG1, "--input", "x=1", "--input", "y=2", "--out", str(tmp_path))
    assert code == 2 and "Traceback" not in err  # a directory, not a file
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == 2 and "cannot read model file" in err

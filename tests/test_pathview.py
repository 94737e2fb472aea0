"""Readable paths (issue 17): one line per layer, nothing lost in the collapsing."""

import math

import numpy as np
import pytest

import semir
from semir import analysis, pathview

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")
from test_models import tiny_bert  # noqa: E402


@pytest.fixture
def bert_path(tmp_path):
    tiny_bert(tmp_path, layers=3, hidden=8, heads=2, ffn=12)
    m = semir.models.load(tmp_path)
    ids = m.tokenize("the keys to the")
    u = np.linspace(-1.0, 1.0, 8).astype(np.float32)
    r = semir.compile(m.program(position=0), "max_product", wrt=["embeddings"])(**m.inputs(ids, readout=u))
    return m, ids, r, analysis.top_paths(r, "embeddings", (2,))[0]


def test_every_node_of_an_imported_program_is_named(bert_path):
    m, _, r, path = bert_path
    assert not [n.name for n in r.program.nodes if n.name.startswith("%")]
    assert all(not s.node.startswith("%") for s in path)


def test_a_path_prints_one_line_per_layer_and_the_lines_multiply_to_its_value(bert_path):
    m, ids, r, path = bert_path
    text = path.format(tokens=m.tokens(ids))
    lines = text.splitlines()
    assert lines[0].startswith(f"path value {path.value:.6g} from embeddings[2,")
    keys = [line.split()[0] for line in lines[1:]]
    # the embeddings and the pooling are weight-1 passages; the readout scales the path by its weight
    assert keys[:m.layers] == [f"layer{i}" for i in range(m.layers)] and keys[m.layers:] in ([], ["objective"])
    assert f"token 2 {m.tokens(ids)[2]!r}" in lines[1]
    segs = pathview.segments(path, r.program, path.shapes, len(ids))
    assert math.prod(g.factor for g in segs) == pytest.approx(path.value, rel=1e-6)
    shown = {it.step for g in segs for it in g.items}
    consumers = {}
    for n in r.program.nodes:
        for i in set(n.inputs):
            consumers[i] = consumers.get(i, 0) + 1
    for i in range(1, len(path)):
        if i not in shown:  # what was collapsed neither scales, nor chooses a branch, nor changes token
            assert path[i - 1].weight == 1.0 and consumers[path[i - 1].node] == 1
            hidden = [path.shapes[path[j].node] == (len(ids), 8) for j in (i - 1, i)]
            assert not all(hidden) or path[i - 1].index[0] == path[i].index[0]
    # the full listing is still there, one step per line
    assert len(path.format(detail=True).splitlines()) == len(path) + 1
    assert repr(path).startswith("<Path value") and len(repr(path)) < 200


def test_a_path_without_a_program_lists_its_steps():
    p = semir.results.Path([semir.results.Step("x", (0,), 2.0), semir.results.Step("y", (), 1.0)])
    assert str(p).splitlines()[1:] == ["  x[0]  --(2)-->", "  y[]  (output)"]
    assert str(semir.results.Path()) == "no path (the value is the semiring's zero)"


@pytest.mark.parametrize("name,want", [("layer3.attention.skip", ("layer3", True)),
                                       ("lm.transformer.h.0.attn.c_attn.view_1", ("lm.transformer.h.0", True)),
                                       ("encoder.layer.11.output", ("encoder.layer.11", True)),
                                       ("lm.lm_head.mm", ("lm.lm_head", False)), ("select_2", ("select_2", False)),
                                       ("embeddings", ("embeddings", False))])
def test_segments_follow_the_dotted_names(name, want):
    assert pathview.segment(name) == want

"""The README's Python blocks run as written, in order, in one namespace: documentation that cannot rot."""

import os
import re

import pytest
from conftest import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 4


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the blocks name files relative to the repository, e.g. examples/paper_fig1.semir
    ns: dict = {}
    for i, block in enumerate(BLOCKS):
        code = block.replace('checkpoint="ck.npz"', f"checkpoint={str(tmp_path / 'ck.npz')!r}")
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), ns)
        except Exception as e:  # name the block: a failure here is a documentation bug
            pytest.fail(f"README python block {i + 1} fails: {type(e).__name__}: {e}\n{block}")
    assert os.path.exists(tmp_path / "ck.npz")

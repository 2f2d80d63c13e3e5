"""Shared transformers plumbing for the scorer and the embedder: loading a local
checkpoint with the hub offline, int8 dynamic quantisation on CPU, length-sorted batches
padded only to their own longest text, and an optional ONNX Runtime copy of a
sequence-classification checkpoint (exported once from the ``from_pretrained`` model into
the cache, with ORT's transformer fusions and dynamic int8)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: bump when :func:`export_onnx` writes something different, so cached exports are redone
ONNX_EXPORT_VERSION = 1
#: model types whose graphs ORT's BERT fusions (Attention, SkipLayerNorm, BiasGelu) handle
_FUSABLE = {"bert", "roberta", "xlm-roberta", "camembert"}


def load_local(path: str | Path, auto_class: str, *, what: str, threads: int | None = None,
               device: str | None = None, pooler: bool = True) -> tuple[Any, Any, Any, str]:
    """``(torch, tokenizer, model in eval mode, device)`` from a local directory loaded with
    ``from_pretrained`` (``auto_class``: e.g. ``AutoModel``); the hub stays offline.

    ``pooler=False``: a BERT-family encoder is built without its pooling layer (a caller
    that pools the hidden states itself). The e5 checkpoint has no pooler weights, and
    loading one with it printed a "LOAD REPORT ... MISSING ... Consider training on your
    downstream task" table at every start of the demo and the workers."""
    torch, transformers, folder = offline_transformers(path, what)
    if threads:
        torch.set_num_threads(threads)
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # a worker's log is no terminal: no "Loading weights" progress bar on every start
    transformers.utils.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    kwargs: dict[str, Any] = {}
    if not pooler:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        if getattr(config, "model_type", "") in _FUSABLE:  # their models take the argument
            kwargs["add_pooling_layer"] = False
    model = getattr(transformers, auto_class).from_pretrained(folder, local_files_only=True,
                                                              **kwargs)
    model.eval()
    return torch, tokenizer, model, chosen


@contextmanager
def quiet_quantization() -> Iterator[None]:
    """Silence torch's deprecation notice of ``torch.quantize_per_tensor``, which its own
    ``quantize_dynamic`` triggers once per process (the pinned torch still supports it;
    docs/architecture.md, "Noticed, left alone")."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor",
                                category=UserWarning)
        yield


def offline_transformers(path: str | Path, what: str) -> tuple[Any, Any, Path]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} directory {folder} does not exist")
    return torch, transformers, folder


#: x86 flags of int8 dot products that accumulate in 32 bits (VNNI, AMX)
_EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
#: x86 flags of bf16 matrix products in hardware (AMX tiles, AVX-512 dot products); ARM's
#: BF16 extension shows as ``bf16`` in /proc/cpuinfo's Features
_FAST_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")

#: numeric formats :class:`models.embed.TransformerEmbedder` can run an encoder in
PRECISIONS = ("auto", "bf16", "int8", "fp32")


def cpuinfo_field(names: tuple[str, ...], cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The value of the first /proc/cpuinfo line whose key is one of ``names``, or None."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in names:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``; empty when unknown)."""
    return frozenset((cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())


def int8_is_exact(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """Whether torch's dynamic int8 matrix products are safe on this CPU. On x86 without
    VNNI, fbgemm multiplies u8 x s8 with ``vpmaddubsw``, whose 16-bit pair sums saturate:
    measured on an AVX2-only EPYC, the 12-layer e5 embedder's int8 vectors joined 98 of 180
    paraphrases of a planted rumour where fp32 joined 125 (VNNI int8 matched fp32). The
    ONNX Runtime int8 sentiment model scored the same held-out figures on both CPUs, so
    the served sentiment path does not consult this. Non-x86 CPUs (ARM's int8 dot
    products accumulate in 32 bits) count as exact."""
    if not _is_x86(machine):
        return True
    return bool((cpu_flags() if flags is None else flags) & _EXACT_INT8_FLAGS)


def _is_x86(machine: str | None) -> bool:
    import platform

    return (machine or platform.machine()).lower() in _X86


def bf16_is_fast(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (x86 AMX-BF16 or AVX512-BF16,
    ARM BF16). Measured on a 2-core AMX Xeon (benchmarks/bench_embed.py): the 12-layer e5
    embedder ran 564 texts/s in bf16 against 338 in dynamic int8 and 204 in fp32, and its
    bf16 vectors kept cosine >= 0.9999 to fp32 where dynamic int8 fell to 0.948. Without
    such instructions torch emulates bf16, slower than fp32."""
    found = cpu_flags() if flags is None else flags
    if _is_x86(machine):
        return bool(found & _FAST_BF16_FLAGS)
    return "bf16" in found


def encoder_precision(flags: frozenset[str] | None = None, machine: str | None = None) -> str:
    """The numeric format ``auto`` picks for an encoder on this CPU: ``int8`` where dynamic
    int8 is exact (:func:`int8_is_exact`), else ``fp32``. ``bf16`` is faster and does not
    depend on the batch, but only on request: the clusterer's threshold and the rumour
    score were calibrated on int8 vectors: with bf16 vectors held-out PHEME scored 0.647
    instead of 0.666 (claim model retrained on them) and the streamed demo ended with 19
    flagged clusters instead of 16 (docs/rumour-model.md, "Numeric format of the
    embedder")."""
    return "int8" if int8_is_exact(flags, machine) else "fp32"


def quantize_int8(torch: Any, model: Any) -> Any:
    """Dynamic int8 quantisation of the Linear layers (CPU inference)."""
    with quiet_quantization():
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                      dtype=torch.qint8)


def padded_batches(encoded: Sequence[Sequence[int]], batch_size: int,
                   pad_id: int) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """``(indices, input_ids, attention_mask)`` as int64 arrays per batch, shortest first;
    each batch is padded only to its own longest text."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            seq = encoded[i]
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        yield idx, ids, mask


def sorted_batches(torch: Any, encoded: Sequence[Sequence[int]], batch_size: int,
                   pad_id: int) -> Iterator[tuple[list[int], Any, Any]]:
    """``(indices, input_ids, attention_mask)`` per batch as torch tensors, shortest first."""
    for idx, ids, mask in padded_batches(encoded, batch_size, pad_id):
        yield idx, torch.from_numpy(ids), torch.from_numpy(mask)


# --------------------------------------------------------------------------- ONNX Runtime


def onnx_runtime_available() -> bool:
    """Whether ``onnxruntime`` is installed (needed to run an export)."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_export_available() -> bool:
    """Whether a new export can be made (``onnxruntime`` and ``onnx`` installed)."""
    return onnx_runtime_available() and importlib.util.find_spec("onnx") is not None


def checkpoint_fingerprint(folder: str | Path) -> str:
    """A short hash naming a local checkpoint: its config and the names, sizes and
    modification times of its files (cheap; a rewritten checkpoint gets a new name)."""
    root = Path(folder).resolve()
    h = hashlib.sha256(f"onnx-export-{ONNX_EXPORT_VERSION}:{root}".encode())
    for f in sorted(p for p in root.iterdir() if p.is_file()):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        if f.name == "config.json":
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def export_onnx(model: Any, config: Any, out_dir: str | Path, *, quantize: bool) -> Path:
    """Write ``model.onnx`` for a sequence-classification ``model`` (loaded with
    ``from_pretrained(..., attn_implementation="eager")``) into ``out_dir``.

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch x length, both dynamic),
    output ``logits``.  BERT-family graphs get ORT's transformer fusions; ``quantize``
    adds dynamic int8 weights on every MatMul/Attention (activations quantised per call,
    like ``torch.ao`` dynamic quantisation); the embeddings stay fp32.  The fp32 export is
    checked against the torch model before anything is written; a mismatch raises.
    """
    import onnx
    import onnxruntime as ort
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "export.onnx"
    probe_ids = torch.tensor([[config.bos_token_id or 0, 5, 6, 7, 8, config.eos_token_id or 2],
                              [config.bos_token_id or 0, 9, config.eos_token_id or 2, 1, 1, 1]])
    probe_ids = probe_ids.clamp(max=config.vocab_size - 1)
    probe_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    dyn = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
           "logits": {0: "batch"}}
    with torch.inference_mode():
        expected = model(input_ids=probe_ids, attention_mask=probe_mask).logits.float().numpy()
    with warnings.catch_warnings():  # the TorchScript exporter's tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (probe_ids, probe_mask), str(raw), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes=dyn, opset_version=17)
    current = raw
    model_type = str(getattr(config, "model_type", ""))
    if model_type in _FUSABLE:
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            fused = optimize_model(str(raw), model_type="bert", opt_level=1,
                                   num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size))
            fused.save_model_to_file(str(out / "fused.onnx"))
            current = out / "fused.onnx"
        except Exception as exc:  # a graph the fusions do not recognise: keep it unfused
            log.warning("ONNX transformer fusion failed (%s); using the plain export", exc)
    _check_onnx(ort, current, probe_ids.numpy(), probe_mask.numpy(), expected, atol=1e-3)
    final = out / "model.onnx"
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(current), str(final), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        _check_onnx(ort, final, probe_ids.numpy(), probe_mask.numpy(), expected, atol=None)
    else:
        current.rename(final)
    for name in ("export.onnx", "fused.onnx"):
        (out / name).unlink(missing_ok=True)
    (out / "export.json").write_text(json.dumps({
        "version": ONNX_EXPORT_VERSION, "quantize": quantize, "fused": current.name == "fused.onnx",
        "onnxruntime": ort.__version__, "torch": torch.__version__,
    }, indent=1) + "\n", encoding="utf-8")
    return final


def _check_onnx(ort: Any, path: Path, ids: np.ndarray, mask: np.ndarray, expected: np.ndarray,
                atol: float | None) -> None:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    if got.shape != expected.shape or not np.isfinite(got).all():
        raise RuntimeError(f"ONNX export {path.name}: bad output {got.shape}")
    if atol is not None and not np.allclose(got, expected, atol=atol, rtol=1e-3):
        diff = float(np.abs(got - expected).max())
        raise RuntimeError(f"ONNX export {path.name} differs from torch by {diff:.2e}")


def ensure_onnx_classifier(folder: str | Path, *, quantize: bool,
                           cache_dir: str | Path | None = None) -> Path:
    """``model.onnx`` of a local sequence-classification checkpoint, exported once into
    ``<cache>/onnx/<fingerprint>-<int8|fp32>/``: the checkpoint is loaded with
    ``AutoModelForSequenceClassification.from_pretrained(folder)`` (hub offline) and
    exported by :func:`export_onnx`.  Raises when the export fails or cannot be made."""
    from models.sentiment_base import DEFAULT_CACHE, build_once

    _, transformers, src = offline_transformers(folder, "model")
    root = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE / "onnx"
    target = root / f"{checkpoint_fingerprint(src)}-{'int8' if quantize else 'fp32'}"
    if (target / ".complete").exists():
        return target / "model.onnx"
    if not onnx_export_available():
        raise RuntimeError("exporting to ONNX needs the onnxruntime and onnx packages")

    def build(tmp: Path) -> None:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            src, local_files_only=True, attn_implementation="eager").eval()
        export_onnx(model, model.config, tmp, quantize=quantize)

    marker = json.dumps({"source": str(src.resolve()), "quantize": quantize}) + "\n"
    return build_once(target, build, marker, replaces=lambda m: _stale_export(m, marker)) \
        / "model.onnx"


def _stale_export(sibling: str, marker: str) -> bool:
    """An export of the same checkpoint directory as an older fingerprint (the checkpoint
    was rewritten), or of a checkpoint directory that is gone."""
    if sibling == marker:
        return True
    try:
        source = json.loads(sibling).get("source")
    except (ValueError, AttributeError):
        return False
    return isinstance(source, str) and not Path(source).exists()


class OnnxClassifier:
    """An ONNX Runtime CPU session over ``model.onnx``: ``logits(ids, mask)``; thread-safe."""

    def __init__(self, path: str | Path, threads: int | None = None, *,
                 spin: bool = False) -> None:
        """``threads``: intra-op threads (None: ORT's default, the physical cores).
        ``spin`` lets idle worker threads busy-wait for the next call: slightly faster on
        an idle machine, but it burns CPU that the event loop and Kafka client on the same
        cores need, so it is off by default."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

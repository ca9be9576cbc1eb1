"""Base vs adapter mSA, in one report that the terminal, the Finetune widget and the demo all render.

:func:`~.interactive.evaluate_interactive` returns a score per metric; an :class:`EvaluationReport`
holds the base model's and the adapter's scores with what they were measured on, and
:meth:`EvaluationReport.rows` gives the per-metric rows (name, base, adapter, change) that every
table is drawn from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: the score keys of an evaluation, in the order tables show them
METRICS = ("point", "box", "i_p", "i_b")
#: how tables and messages name them (the paper's names)
METRIC_NAMES = ("Point", "Box", "I_P", "I_B")
#: the automatic segmentation's score (AIS with an instance decoder, else AMG), where it was measured
AUTOMATIC = ("ais", "AIS")
#: on volumes (see :mod:`.volume`): 3D objects propagated from one box, and the automatic 3D result
VOLUME = (("volume", "3D"), ("volume_ais", "3D AIS"))
#: the scores only some evaluations have, in table order after :data:`METRICS`
OPTIONAL = (AUTOMATIC, *VOLUME)


def _named(scores: Scores) -> list[tuple[str, str]]:
    """(key, name) of the metrics ``scores`` holds, in table order."""
    named = list(zip(METRICS, METRIC_NAMES, strict=True))
    return named + [(key, name) for key, name in OPTIONAL if key in scores]


Scores = Mapping[str, float]


def scores_line(scores: Scores) -> str:
    """``"Point 0.512  Box 0.634  I_P 0.701  I_B 0.723"`` (and ``AIS 0.4``, ``3D 0.7``, ``3D AIS 0.5``): one
    model's scores on one line."""
    return "  ".join(f"{name} {scores[key]:.3f}" for key, name in _named(scores))


@dataclass(frozen=True)
class ReportRow:
    """One metric of a report: its name, both scores and the change (adapter minus base)."""

    metric: str
    base: float
    adapter: float
    change: float


@dataclass(frozen=True)
class EvaluationReport:
    """Base vs adapter mSA on the same images, and a sentence saying which images those were.

    ``base`` and ``adapter`` are what :func:`~.interactive.evaluate_interactive` returns (a 0..1 score
    per metric in :data:`METRICS`, and ``n_objects``); ``validation`` names where the images came from
    ("validation split", "held out automatically", "training data"), ``measured_on`` says it in words.
    """

    validation: str
    measured_on: str
    images: int
    objects: int
    base: dict[str, float]
    adapter: dict[str, float]

    def change(self, metric: str) -> float:
        """Adapter minus base for ``metric`` (one of :data:`METRICS`)."""
        return self.adapter[metric] - self.base[metric]

    def rows(self) -> list[ReportRow]:
        """One row per metric, in the order of :data:`METRICS`, named as in :data:`METRIC_NAMES`; then
        ``AIS``, ``3D`` and ``3D AIS`` where both sides have that score."""
        named = [(key, name) for key, name in _named(self.base) if key in self.adapter]
        return [ReportRow(name, self.base[key], self.adapter[key], self.change(key)) for key, name in named]

    def text(self) -> str:
        """A fixed-width table for a terminal: what it was measured on, then base, adapter and change."""
        rows = self.rows()
        lines = [f"mSA on {self.measured_on}", f"{'':<16}" + "".join(f"{row.metric:>8}" for row in rows)]
        lines.append(f"{'base':<16}" + "".join(f"{row.base:>8.3f}" for row in rows))
        lines.append(f"{'adapter':<16}" + "".join(f"{row.adapter:>8.3f}" for row in rows))
        lines.append(f"{'change':<16}" + "".join(f"{row.change:>+8.3f}" for row in rows))
        return "\n".join(lines)

    def markdown(self, title: str, base_label: str, adapter_label: str) -> str:
        """A markdown table with the metrics as columns and a row each for base, adapter and change."""
        rows = self.rows()
        lines = [f"| {title} | " + " | ".join(row.metric for row in rows) + " |", "|---" * (len(rows) + 1) + "|"]
        lines.append(f"| {base_label} | " + " | ".join(f"{row.base:.3f}" for row in rows) + " |")
        lines.append(f"| {adapter_label} | " + " | ".join(f"{row.adapter:.3f}" for row in rows) + " |")
        lines.append("| change | " + " | ".join(f"{row.change:+.3f}" for row in rows) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (as in ``run.json``'s ``evaluation`` and the ``evaluation`` event)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvaluationReport:
        """The report of a ``run.json`` ``evaluation`` entry (older ones may lack the counts).

        Raises
        ------
        KeyError
            Without ``base`` or ``adapter`` scores.
        """
        return cls(
            validation=str(values.get("validation", "")),
            measured_on=str(values.get("measured_on", "")),
            images=int(values.get("images", 0)),
            objects=int(values.get("objects", 0)),
            base=dict(values["base"]),
            adapter=dict(values["adapter"]),
        )

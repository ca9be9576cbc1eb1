"""A small live line plot (training loss, validation score) drawn with QPainter.

No plotting library: the dock only needs a curve, its range and its last value, and the
widget repaints in well under a millisecond per update.
"""

from __future__ import annotations

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class CurvePlot(QWidget):
    def __init__(self, title: str, color: str = "#4FC3F7", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.color = QColor(color)
        self.points: list[tuple[float, float]] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_points(self, points: list[tuple[float, float]]) -> None:
        self.points = list(points)
        self.update()

    def add_point(self, x: float, y: float) -> None:
        self.points.append((float(x), float(y)))
        self.update()

    def clear(self) -> None:
        self.set_points([])

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = self.rect().adjusted(4, 16, -4, -4)
        painter.setPen(QPen(QColor("#888888")))
        painter.drawRect(rect)
        last = f"  last {self.points[-1][1]:.3f}" if self.points else "  (no data yet)"
        painter.drawText(4, 12, f"{self.title}{last}")
        if len(self.points) < 2:
            painter.end()
            return
        xs, ys = zip(*self.points, strict=True)
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 0.5, y1 + 0.5
        x1 = x1 if x1 > x0 else x0 + 1

        def to_screen(x: float, y: float) -> QPointF:
            return QPointF(
                rect.left() + (x - x0) / (x1 - x0) * rect.width(),
                rect.bottom() - (y - y0) / (y1 - y0) * rect.height(),
            )

        painter.setPen(QPen(self.color, 1.5))
        painter.drawPolyline(QPolygonF([to_screen(x, y) for x, y in self.points]))
        painter.setPen(QPen(QColor("#888888")))
        inner = rect.adjusted(2, 0, -2, 0)
        painter.drawText(inner, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, f"{y1:.3g}")
        painter.drawText(inner, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, f"{y0:.3g}")
        painter.end()

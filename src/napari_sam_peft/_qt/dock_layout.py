"""Docks that fit the screen: wrapping text, scrolling content, one tab group for the plugin.

- Text a user cannot control the length of (paths, messages) wraps at word and path
  boundaries and never asks for width, so no message can widen a dock and squeeze the canvas.
- Each widget's content scrolls vertically, so three docks fit a 800 px tall screen.
- The mouse wheel scrolls the dock: a spin box, drop-down or slider under the pointer changes with the wheel
  only once it has focus (clicked or tabbed to), so scrolling never changes a setting by accident.
- The plugin's docks share one tab group on whichever side the first one was docked,
  with Segment in front, however they were opened (the Plugins menu docks each one
  separately, stacked).
"""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import Container, FileEdit, Label, PushButton
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDockWidget,
    QFrame,
    QLabel,
    QLineEdit,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

DOCK_PROPERTY = "napari_sam_peft_dock"  # Qt property naming each of the plugin's widgets
FRONT_DOCK = "Segment"
MIN_DOCK_WIDTH = 250
DOCK_WIDTH = 280
MIN_DOCK_HEIGHT = 200
BREAK = "\u200b"  # zero-width space: a line-break opportunity Qt honours, invisible on screen


def on_click(button: PushButton, action: Callable[[], object]) -> None:
    """Run ``action()`` when ``button`` is clicked.

    A button's signal passes its checked state; slots that take optional arguments would
    receive it (``start(env=False)``), so the state is dropped here, for every button.
    """
    button.clicked.connect(lambda *_: action())


def wrapping(label: Label) -> Label:
    """Let ``label`` wrap and take no more width than the dock gives it."""
    native: QLabel = label.native
    native.setWordWrap(True)
    native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    native.setMinimumWidth(1)
    return label


def steady(label: Label, lines: int) -> Label:
    """Give a wrapping label at least ``lines`` lines, and let :func:`hold_heights` keep its height from
    shrinking while a run goes on: a text that changes then (an estimate, a note after a hot reload) must
    not make the Stop button below it jump from under the pointer. No text is ever cut."""
    native: QLabel = wrapping(label).native
    native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    keeper = _HeightKeeper(native, lines)
    native.setMinimumHeight(keeper.least)
    native.installEventFilter(keeper)
    return label


def hold_heights(labels: list[Label], hold: bool) -> None:
    """While ``hold``, each :func:`steady` label keeps the tallest height it has had; after, it follows its
    text again."""
    for label in labels:
        keeper = label.native.findChild(_HeightKeeper)
        if keeper is not None:
            keeper.hold(hold)


def show_text(label: Label, text: str, tooltip: str | None = None) -> None:
    """Show ``text`` in a wrapping label; paths break at separators, the tooltip keeps it whole."""
    label.value = text.replace("/", "/" + BREAK).replace("\\", "\\" + BREAK)
    label.native.setToolTip(tooltip if tooltip is not None else text)


def full_width(*widgets) -> None:
    """Let each widget span the dock's width: hide the empty label column magicgui gives it."""
    for widget in widgets:
        parent = widget.native.parentWidget()
        layout = parent.layout() if parent is not None else None
        first = layout.itemAt(0).widget() if layout is not None and layout.count() > 1 else None
        if isinstance(first, QLabel) and first is not widget.native:
            first.hide()


def _file_edits(container: Container) -> list[FileEdit]:
    found = []
    for child in container:
        if isinstance(child, FileEdit):
            found.append(child)
        elif isinstance(child, Container):
            found += _file_edits(child)
    return found


def _compact(native: QWidget) -> None:
    """Tighter rows than magicgui's defaults, so a whole widget shows on a 800 px screen."""
    for child in [native, *native.findChildren(QWidget)]:
        layout = child.layout()
        if layout is None:
            continue
        if child is native:
            layout.setContentsMargins(6, 6, 6, 6)
        else:
            layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)


def fit_to_dock(container: Container, name: str) -> None:
    """Make ``container``'s content scroll vertically and fit any dock width; call it last in ``__init__``.

    napari docks ``container.native`` (not magicgui's optional scroll area), so the content
    moves into a scroll area inside ``native``. magicgui keeps its layout object, so widgets
    appended later still land in the scrolled content.
    """
    native: QWidget = container.native
    native.setProperty(DOCK_PROPERTY, name)
    for combo in native.findChildren(QComboBox):
        # a long choice (a model name, a layer name) must not set the dock's width
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)
    for edit in native.findChildren(QLineEdit):
        edit.setMinimumWidth(60)
    guard = _WheelNeedsFocus(native)
    for field in native.findChildren((QComboBox, QAbstractSpinBox, QAbstractSlider)):
        guard.watch(field)
    for file_edit in _file_edits(container):
        file_edit.choose_btn.text = "Browse..."
    _compact(native)
    content = QWidget()
    content.setLayout(native.layout())  # Qt moves the layout and the widgets it manages
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    outer = QVBoxLayout(native)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    native.setMinimumWidth(MIN_DOCK_WIDTH)
    native.setMinimumHeight(MIN_DOCK_HEIGHT)
    # napari wraps the widget in its dock after construction: join the plugin's tab group then.
    native.installEventFilter(_TabifyOnShow(native))


class _HeightKeeper(QObject):
    """Raises a label's minimum height to each taller height the layout gives it, while held."""

    def __init__(self, label: QLabel, lines: int) -> None:
        super().__init__(label)
        self.label = label
        self.least = lines * label.fontMetrics().lineSpacing() + 4
        self.holding = False

    def hold(self, hold: bool) -> None:
        self.holding = hold
        self.label.setMinimumHeight(max(self.least, self.label.height()) if hold else self.least)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if self.holding and event.type() == QEvent.Type.Resize and event.size().height() > obj.minimumHeight():
            obj.setMinimumHeight(event.size().height())
        return False


class _WheelNeedsFocus(QObject):
    """A setting changes with the wheel only while it has focus; otherwise the wheel scrolls the dock.

    Qt's spin boxes, drop-downs and sliders take the wheel whenever the pointer passes over them (and
    take focus from it): scrolling a long dock then changed whichever setting came under the pointer.
    """

    def watch(self, field: QWidget) -> None:
        field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # clicked or tabbed to, never focused by the wheel
        field.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            scroll = obj.parentWidget()
            while scroll is not None and not isinstance(scroll, QScrollArea):
                scroll = scroll.parentWidget()
            if scroll is not None:  # the dock scrolls, as if the field were not there
                QApplication.sendEvent(scroll.viewport(), event)
            return True
        return False


class _TabifyOnShow(QObject):
    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self.widget = widget

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if obj is self.widget and event.type() == QEvent.Type.Show and tabify_plugin_docks(self.widget):
            self.widget.removeEventFilter(self)  # docked: done; else wait for the next show
        return False


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _plugin_name(dock: QDockWidget) -> str | None:
    for child in dock.findChildren(QWidget):
        name = child.property(DOCK_PROPERTY)
        if name:
            return str(name)
    return None


def tabify_plugin_docks(widget: QWidget) -> bool:
    """Put the dock holding ``widget`` into a tab group with the plugin's other docks; Segment in front.

    Returns False when ``widget`` is not docked in a main window (yet).
    """
    dock = _dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    if dock is None or not isinstance(window, QMainWindow):
        return False
    docks = [d for d in window.findChildren(QDockWidget) if d is not dock and _plugin_name(d) and d.isVisible()]
    if docks:
        window.tabifyDockWidget(docks[0], dock)
    # narrow enough that the canvas keeps half of a 1280 px wide window
    window.resizeDocks([dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)
    front = next((d for d in [dock, *docks] if _plugin_name(d) == FRONT_DOCK), None)
    if front is not None:
        front.raise_()
    return True

"""The widget of one training-job field, and the job value it holds: a choice, a switch, a number or text.

The Finetune dock's settings (:mod:`.finetune_settings`) make one per field of the job's schema
(:class:`~napari_sam_peft.core.training.job.TrainingJob`) that has a widget label.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, LineEdit, SpinBox
from magicgui.widgets.bases import ValueWidget

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.training.job import JobField, format_value


def sentence(text: str) -> str:
    """``text`` with a capital first letter."""
    return text[:1].upper() + text[1:]


#: the largest value of a whole-number setting whose schema sets no maximum
INT_MAXIMUM = 1_000_000


def field_widget(job_field: JobField) -> ValueWidget:
    """The widget for a job field: a choice, a switch, a number box or a text field, as the schema says."""
    option = job_field.option
    value = job_field.widget_default
    widget: ValueWidget
    if option.choices:
        widget = ComboBox(label=option.label, choices=list(option.choices))
        if value is not None:
            widget.value = value
    elif job_field.type is bool:
        widget = CheckBox(text=option.label, value=bool(value))
    elif job_field.type is int and not job_field.optional:
        low = 0 if option.minimum is None else option.minimum
        high = INT_MAXIMUM if option.maximum is None else option.maximum
        widget = SpinBox(label=option.label, value=value or 0, min=low, max=high)
    else:  # text, and numbers that may be left to the run: empty shows "auto"
        widget = LineEdit(label=option.label, value="" if value is None else format_value(value))
        if job_field.optional and job_field.type in (int, float):
            widget.native.setPlaceholderText("auto")
    widget.tooltip = sentence(option.tooltip or option.help)
    return widget


def field_value(job_field: JobField, widget: ValueWidget) -> Any:
    """The job value a field's widget holds: empty text and a 0 for an optional number mean None.

    Raises
    ------
    SamPeftError
        For a number field whose text is not a positive number.
    """
    value = widget.value
    if isinstance(value, str):
        value = value.strip()
    if job_field.optional and not value:
        return None
    if job_field.type in (int, float) and isinstance(value, str):
        value = _positive_number(job_field, value)
    return value


def _positive_number(job_field: JobField, text: str) -> float | int | None:
    """The number in ``text``; a whole number for an int field, where 0 means auto (None)."""
    label, whole = job_field.option.label, job_field.type is int
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number like 200" if whole else f"a number like {job_field.default_text or '1e-4'}"
        raise SamPeftError(f"The {label} must be {kind}, or empty for auto; not {text!r}.") from None
    if whole and value == 0:
        return None
    if not value > 0:
        raise SamPeftError(f"The {label} must be positive, or empty for auto.")
    maximum = job_field.option.maximum
    if maximum is not None and value > maximum:
        raise SamPeftError(f"The {label} can be at most {maximum:,}; not {value:,}.")
    return value

"""Every error a user can cause is a SamPeftError, so the GUI and the CLI report them all the same way."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.data.files import UnreadableFileError
from napari_sam_peft.core.errors import (
    DeviceNotAvailableError,
    InvalidCheckpointError,
    ModelNotAvailableError,
    SamPeftError,
)
from napari_sam_peft.core.sam.devices import select_device


@pytest.mark.parametrize(
    "error", [ModelNotAvailableError, InvalidCheckpointError, DeviceNotAvailableError, UnreadableFileError]
)
def test_user_errors_are_sam_peft_errors_and_not_each_other(error):
    assert issubclass(error, SamPeftError) and issubclass(SamPeftError, Exception)
    others = {ModelNotAvailableError, InvalidCheckpointError, DeviceNotAvailableError} - {error}
    assert not any(issubclass(error, other) for other in others)


def test_a_raised_user_error_is_caught_as_a_sam_peft_error_with_its_message():
    with pytest.raises(SamPeftError, match="auto, cuda, mps, cpu"):
        select_device("gpu-please")

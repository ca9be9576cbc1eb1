"""The adapter file on disk: safetensors with metadata and a content hash that detects any change."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from napari_sam_peft.core.peft.adapter_format import (
    ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION,
    InvalidAdapterError,
    content_hash,
    read_adapter_file,
    write_adapter_file,
)

METADATA = {"format": ADAPTER_FORMAT, "format_version": str(ADAPTER_FORMAT_VERSION), "method": "lora"}
TENSORS = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}


def test_what_is_written_is_read_back_and_the_hash_sees_every_change(tmp_path):
    path = write_adapter_file(tmp_path / "x.safetensors", METADATA, TENSORS)
    metadata, tensors = read_adapter_file(path)
    assert metadata == METADATA and set(tensors) == {"a", "b"} and torch.equal(tensors["a"], TENSORS["a"])
    base = content_hash(METADATA, TENSORS)
    assert content_hash({**METADATA, "method": "ssf"}, TENSORS) != base
    assert content_hash(METADATA, {**TENSORS, "b": torch.zeros(4)}) != base
    assert content_hash({**METADATA, "content_hash": "x"}, TENSORS) == base


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({**METADATA, "content_hash": "0" * 64}, "modified or damaged"),
        ({"format": "something-else"}, "not a napari-sam-peft adapter"),
        ({**METADATA, "format_version": str(ADAPTER_FORMAT_VERSION + 1)}, "Update napari-sam-peft"),
    ],
    ids=["edited", "not-an-adapter", "newer-format"],
)
def test_a_file_that_cannot_be_trusted_is_refused_with_the_reason(tmp_path, metadata, message):
    path = tmp_path / "x.safetensors"
    save_file(TENSORS, str(path), metadata=metadata)
    with pytest.raises(InvalidAdapterError, match=message):
        read_adapter_file(path)


def test_an_adapter_must_be_named_safetensors(tmp_path):
    with pytest.raises(InvalidAdapterError, match="end in '.safetensors', not '.pt'"):
        write_adapter_file(tmp_path / "x.pt", METADATA, TENSORS)
    assert not list(tmp_path.iterdir())

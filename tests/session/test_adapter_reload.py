"""The hot reload without Qt: a file asked for is read on a thread, attached when the model is free,
the newest request wins, a bad file drops the request, and the base/adapter switch holds reloads back."""

from __future__ import annotations

import threading

import pytest
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
from napari_sam_peft.session import AdapterChange, AnnotatorSession


def _adapter_file(model, path, shift: float):
    handle = attach(model.sam, spec_from_preset("lora", model.architecture.depth, rank=2))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(shift)
    adapter = Adapter.from_attached(handle, model)
    handle.detach()
    return adapter.save(path)


@pytest.fixture
def session(tiny_model, tmp_path) -> AnnotatorSession:
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    return session


@pytest.fixture
def files(tiny_model, tmp_path):
    return [_adapter_file(tiny_model, tmp_path / f"best_{i}.safetensors", 0.1 * (i + 1)) for i in range(2)]


def _hold_the_model(session):
    """A worker thread that holds the model's lock (an embedding being computed) until released."""
    held, release = threading.Event(), threading.Event()

    def work():
        with session.model.lock:
            held.set()
            release.wait()

    thread = threading.Thread(target=work)
    thread.start()
    held.wait()
    return release, thread


def test_a_reload_attaches_the_file_once_read_and_says_what_it_did(session, files):
    changes = []
    session.model.adapter_changed.connect(changes.append)
    assert session.model.finish_reload() == "idle"
    session.model.reload_adapter(files[0])
    assert session.model.reload_pending == files[0]
    assert session.model.finish_reload(timeout=None) == "attached"
    assert session.model.adapter_path == files[0] and session.model.reload_pending is None
    assert session.model.reloads == 1
    assert [c.path for c in changes] == [files[0]] and isinstance(changes[0], AdapterChange)
    assert session.model.finish_reload() == "idle"


def test_a_busy_model_is_retried_not_waited_for(session, files):
    release, thread = _hold_the_model(session)
    session.model.reload_adapter(files[0])
    assert session.model.finish_reload(timeout=None) == "busy"  # at once: the GUI thread never blocks
    assert session.model.adapter is None and session.model.reload_pending == files[0]
    release.set()
    thread.join()
    assert session.model.finish_reload(timeout=None) == "attached"
    assert session.model.adapter_path == files[0]


def test_the_newest_file_asked_for_wins(session, files):
    release, thread = _hold_the_model(session)
    session.model.reload_adapter(files[0])
    assert session.model.finish_reload(timeout=None) == "busy"
    session.model.reload_adapter(files[1])  # the run wrote a better adapter meanwhile
    release.set()
    thread.join()
    assert session.model.finish_reload(timeout=None) == "attached"
    assert session.model.adapter_path == files[1] and session.model.reloads == 1


def test_a_broken_file_drops_the_request_and_keeps_the_adapter(session, files, tmp_path):
    session.model.reload_adapter(files[0])
    session.model.finish_reload(timeout=None)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"half a file")
    session.model.reload_adapter(broken)
    with pytest.raises(SamPeftError, match="not a readable adapter"):
        session.model.finish_reload(timeout=None)
    assert session.model.adapter_path == files[0] and session.model.reload_pending is None
    assert session.model.finish_reload() == "idle"


def test_the_base_model_switch_holds_reloads_back_and_returns_to_the_newest(session, files):
    session.model.reload_adapter(files[0])
    session.model.finish_reload(timeout=None)
    seen = []  # what a view reads when it hears of the change
    session.model.adapter_changed.connect(lambda change: seen.append(session.model.base_only))
    session.model.use_base(True)
    assert session.model.adapter is None and session.model.base_only and seen == [True]
    session.model.reload_adapter(files[1])  # a new best while the user compares with the base
    assert session.model.reload_pending is None and session.model.adapter is None
    session.model.use_base(False)
    assert session.model.adapter_path == files[1] and not session.model.base_only and seen == [True, False]


def test_with_live_reload_off_the_file_is_only_remembered(session, files):
    session.model.reload_adapter(files[0], attach=False)
    assert session.model.finish_reload() == "idle" and session.model.adapter is None
    session.model.use_base(True)
    session.model.use_base(False)  # the switch back to "adapter" picks it up
    assert session.model.adapter_path == files[0]


def test_a_new_base_model_cancels_a_pending_reload(session, files, tiny_model):
    release, thread = _hold_the_model(session)
    session.model.reload_adapter(files[0])
    assert session.model.finish_reload(timeout=None) == "busy"
    release.set()
    thread.join()
    session.model.set_base(tiny_model)
    assert session.model.reload_pending is None and session.model.finish_reload() == "idle"
    assert session.model.adapter is None


def test_shown_embeddings_go_stale_with_a_reload_and_come_back_for_the_new_adapter(session, files):
    from napari_sam_peft.core.data.sample_data import make_sample

    image = make_sample("cells", seed=0, shape=(64, 64)).image
    shown = session.open("cells", image)
    shown.embed(lambda: 0)
    base_key, _ = shown.embedded
    assert shown.ready
    session.model.reload_adapter(files[0])
    session.model.finish_reload(timeout=None)
    assert shown.embedded is None and not shown.ready  # the base's are not the adapter's
    with pytest.raises(SamPeftError, match="still being computed"):
        shown.segment([ObjectPrompts(box=[10, 10, 40, 40])])
    shown.embed(lambda: 0)
    adapted_key, _ = shown.embedded
    assert adapted_key != base_key and shown.ready

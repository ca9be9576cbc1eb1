"""Files sent by content: a manifest here, blobs on the worker, only what the worker lacks is sent."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from napari_sam_peft.core.cluster.blobs import BlobStore, HashCache, batches, folder_manifest
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore


def _store(tmp_path, seeds):
    path = tmp_path / "s.sampeft.zarr"
    store = AnnotationStore(path) if path.exists() else AnnotationStore.create(path)
    for seed in seeds:
        sample = make_sample("cells", seed=seed, shape=(64, 64))
        store.add_labels(sample.image, sample.labels, split="train")
    return store


def _send(store, blobs, cache=None):
    manifest = folder_manifest(store.path, cache)
    files = {digest: store.path / relative for relative, (digest, _) in manifest.items()}
    missing = blobs.missing(files)
    sent = sum(blobs.put(batch) for batch in batches(files, missing, limit=4096))
    return manifest, missing, sent


def test_a_second_send_sends_only_the_new_commits_and_the_store_reads_the_same_there(tmp_path):
    store = _store(tmp_path, [0])
    blobs = BlobStore(tmp_path / "worker" / "blobs")
    manifest, missing, sent = _send(store, blobs)
    unique = dict(manifest.values())  # files with the same bytes (zarr metadata of same-shaped masks) go once
    assert len(missing) == len(unique) < len(manifest) and sent == sum(unique.values())

    _store(tmp_path, [1])  # one more annotated image
    manifest2, missing2, sent2 = _send(store, blobs)
    new_files = set(manifest2) - set(manifest)
    assert 0 < len(missing2) <= len(new_files) and 0 < sent2 < sent * 2  # the first image is not sent again

    copy = AnnotationStore(blobs.materialize(manifest2, tmp_path / "worker" / "run" / "s.sampeft.zarr"))
    assert copy.info()["snapshot"] == store.info()["snapshot"]
    first = store.snapshot().images[0]
    np.testing.assert_array_equal(copy.image(first.image_id), store.image(first.image_id))


def test_a_damaged_blob_is_refused_and_nothing_of_it_is_kept(tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    data = b"adapter bytes"
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(ValueError, match="arrived damaged"):
        blobs.put({digest: data + b"!"})
    assert blobs.missing([digest]) == [digest]
    blobs.put({digest: data})
    assert blobs.missing([digest]) == [] and blobs.path(digest).read_bytes() == data
    with pytest.raises(ValueError, match="not a sha256"):
        blobs.path("../../etc/passwd")
    with pytest.raises(ValueError, match="not a path inside"):
        blobs.materialize({"../escape": [digest, len(data)]}, tmp_path / "out")


def test_unchanged_files_are_not_read_again(tmp_path, monkeypatch):
    store = _store(tmp_path, [0])
    cache = HashCache(tmp_path / "hashes.json")
    first = folder_manifest(store.path, cache)
    cache.save()
    read = []
    from napari_sam_peft.core.cluster import blobs

    monkeypatch.setattr(blobs, "file_hash", lambda path: read.append(path) or "x" * 64)
    assert folder_manifest(store.path, HashCache(tmp_path / "hashes.json")) == first
    assert read == []  # every hash came from the cache


def test_the_adapter_a_continuation_starts_from_goes_to_the_worker_with_the_store(tmp_path, monkeypatch):
    from napari_sam_peft.core.cluster import remote_run
    from napari_sam_peft.core.training.job import TrainingJob

    monkeypatch.setattr(remote_run, "default_cache_dir", lambda: tmp_path / "cache")
    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    sample = make_sample("cells", seed=1)
    store.add_labels(sample.image, sample.labels, split="train")
    parent = tmp_path / "runs" / "adapter.safetensors"
    parent.parent.mkdir()
    parent.write_bytes(b"an adapter's bytes")
    job = TrainingJob(
        store=store.path, model="demo", preset="late_lora", from_adapter=parent, out=tmp_path / "a.safetensors"
    )
    manifest, job_files, files = remote_run._manifest(job)
    digest = hashlib.sha256(b"an adapter's bytes").hexdigest()
    assert job_files == {"from_adapter": ["adapter.safetensors", digest]}  # "demo" is loaded by name there
    assert files[digest] == parent and all(d in files for d, _ in manifest.values())

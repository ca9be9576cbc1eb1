"""micro_sam's tqdm-like callbacks relayed as progress(done, total)."""

from __future__ import annotations

from napari_sam_peft.core.annotation.progress import MicroSamProgress


def test_init_and_updates_report_done_of_total_never_past_the_total():
    calls: list[tuple[int, int]] = []
    bar = MicroSamProgress(lambda done, total: calls.append((done, total)))
    bar.callbacks["pbar_init"](total=3, description="embeddings")
    for _ in range(4):
        bar.callbacks["pbar_update"](1)
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3), (3, 3)]


def test_a_total_of_zero_counts_as_one_and_no_callback_reports_nothing():
    calls: list[tuple[int, int]] = []
    MicroSamProgress(lambda done, total: calls.append((done, total))).init(0)
    assert calls == [(0, 1)]
    silent = MicroSamProgress(None)
    silent.init(2)
    silent.update(2)
    assert (silent.done, silent.total) == (2, 2)

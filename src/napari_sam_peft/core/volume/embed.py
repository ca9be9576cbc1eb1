"""Embedding a volume slice by slice, the slice on screen first, then outwards from it.

The order follows the user: ``focus`` is asked before each slice, so scrolling to a slice that is
not embedded yet makes it (and then its neighbours) the next ones. The first prompt on a new
volume therefore waits for one slice, not for the volume (micro_sam's annotator_3d embeds the
whole volume first).
"""

from __future__ import annotations

from collections.abc import Callable

from .propagation import StoppedError
from .slice_features import VolumeFeatures
from .volumes import slices_outward

#: computes slice ``z``'s embeddings (micro_sam's 2D dict), e.g. ``SessionEmbeddings.compute_slice``
EmbedSlice = Callable[[int], dict]


def next_slice(features: VolumeFeatures, focus: int) -> int | None:
    """The slice to embed next: the nearest one to ``focus`` not embedded yet (above before below)."""
    missing = features.missing(slices_outward(focus, features.n_slices))
    return missing[0] if missing else None


def embed_volume(
    features: VolumeFeatures,
    embed: EmbedSlice,
    focus: Callable[[], int],
    *,
    progress: Callable[[int, int], None] | None = None,
    on_slice: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> VolumeFeatures:
    """Fill ``features`` with every slice's embeddings, nearest to ``focus()`` first.

    ``on_slice(z)`` is called after each slice (the annotator enables prompts on the shown slice
    as soon as it is ready). ``progress`` gets (slices embedded, slices in the volume).

    Raises
    ------
    StoppedError
        When ``should_stop`` turns True between slices (the slices embedded so far stay).
    """
    while (z := next_slice(features, focus())) is not None:
        if should_stop is not None and should_stop():
            raise StoppedError("Embedding stopped; the slices embedded so far are kept.")
        features.put(z, embed(z))
        if progress is not None:
            progress(features.count, features.n_slices)
        if on_slice is not None:
            on_slice(z)
    return features

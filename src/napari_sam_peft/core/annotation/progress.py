"""Progress of long annotation work (embeddings, automatic segmentation) as ``progress(done, total)``.

micro_sam reports progress through a pair of tqdm-like callbacks (``pbar_init``, ``pbar_update``);
the session and the widgets take one ``progress(done, total)`` callback. :class:`MicroSamProgress`
is the one adapter between the two.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(done, total)``: called from whatever thread does the work
ProgressCallback = Callable[[int, int], None]


class MicroSamProgress:
    """micro_sam's ``(pbar_init, pbar_update)`` callbacks, relayed to one ``progress(done, total)``.

    Parameters
    ----------
    progress
        Called with the work done so far and the total (never more done than the total);
        None reports nothing.
    """

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress
        self.total = 1
        self.done = 0

    def init(self, total: int, description: str = "") -> None:
        """micro_sam's ``pbar_init``: the work has ``total`` steps; none is done."""
        self.total, self.done = max(int(total), 1), 0
        if self.progress:
            self.progress(0, self.total)

    def update(self, n: int = 1) -> None:
        """micro_sam's ``pbar_update``: ``n`` more steps are done."""
        self.done += int(n)
        if self.progress:
            self.progress(min(self.done, self.total), self.total)

    @property
    def callbacks(self) -> dict[str, Callable]:
        """The keyword arguments micro_sam's functions take: ``pbar_init`` and ``pbar_update``."""
        return {"pbar_init": self.init, "pbar_update": self.update}

"""Fakes for the cluster's unit tests: Dask's named events (a run's stop flag) without a scheduler."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture
def dask_events(monkeypatch):
    """``distributed.Event`` replaced by flags that share their state by name, as a scheduler's events do:
    ``states`` {name: set?}, ``looks`` the names asked ``is_set``, ``broken`` makes every call fail."""
    import distributed

    shared = SimpleNamespace(states={}, looks=[], broken=False)

    class Event:
        def __init__(self, name, client=None):
            self.name = name

        def set(self):
            if shared.broken:
                raise OSError("the scheduler is gone")
            shared.states[self.name] = True

        def is_set(self):
            shared.looks.append(self.name)
            return shared.states.get(self.name, False)

    monkeypatch.setattr(distributed, "Event", Event)
    return shared

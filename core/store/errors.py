"""Errors the store raises; every message is meant for the user."""

from __future__ import annotations


class StoreError(ValueError):
    """A request the project cannot carry out; the message is meant for the user."""


class ProjectDamaged(StoreError):
    """The project's database cannot be read; its photos are untouched. The message says what can be done."""

    def __init__(self, message: str, backup_time: float | None = None):
        super().__init__(message)
        self.backup_time = backup_time  # when the automatic backup was made, None without one


class RunBusy(StoreError):
    """Another run of this project is queued or training: one at a time."""


class ClassGone(StoreError):
    """Photos were sent to a class (by id) that has been deleted meanwhile."""

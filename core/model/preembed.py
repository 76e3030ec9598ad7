"""Embeddings ready before Train is clicked: what a project still lacks, and embedding some of it.

Every kept photo is embedded with the project's backbone as it is and mirrored (one decode for
both, and for every member of a joined backbone), so that training finds every vector in the cache. The training worker calls
`embed_some` between its jobs; pages call `readiness` to say how many photos are ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.model.backbones import DEFAULT_BACKBONE, get_backbone
from core.model.embed import BATCH, EmbeddingCache, embed_views, view_key
from core.store.project import ImageRecord, Project

VIEWS = (False, True)  # as is, mirrored: what a default training run reads
# Photos the worker asks `embed_some` for at a time: at 50,000 photos finding the missing ones takes about a second,
# so 16 at a time prepared 3.0-3.3 photos a second and 64 at a time 7.0-7.1 (docs/scale.md). Training does not wait
# for a chunk: the worker stops it between batches of BATCH photos.
WORKER_CHUNK = 256


@dataclass(frozen=True)
class Readiness:
    ready: int   # kept photos whose embeddings are all cached
    total: int   # kept photos
    backbone: str

    @property
    def complete(self) -> bool:
        return self.ready >= self.total


def project_backbone(project: Project) -> str:
    return project.backbone or DEFAULT_BACKBONE


def _unprepared(project: Project, shas: list[str], cache: EmbeddingCache | None) -> set[str]:
    """Which of these photos lack an embedding in some view (read from the cache's index, not the vectors)."""
    cache = cache or EmbeddingCache()
    spec = get_backbone(project_backbone(project))
    found = [cache.has(view_key(part, flip), shas) for part in spec.parts for flip in VIEWS]  # as embed_views keys them
    return {sha for sha in shas if any(sha not in f for f in found)}


def missing(project: Project, cache: EmbeddingCache | None = None) -> tuple[list[ImageRecord], int]:
    """The kept photos that lack an embedding in some view, and how many kept photos there are. Worked out from
    their hashes; their records are read only when some photo lacks one (the idle worker asks again and again:
    at 50,000 photos reading every record made each look 0.9 s of CPU instead of 0.3 s)."""
    shas = project.kept_hashes()
    todo = _unprepared(project, shas, cache)
    return ([r for r in project.images(status="kept") if r.sha256 in todo] if todo else []), len(shas)


def readiness(project: Project, cache: EmbeddingCache | None = None) -> Readiness:
    """How many kept photos training will find embedded already ("ready to train: 230 of 262"); from their
    hashes alone, as the pages ask every 2 s."""
    shas = project.kept_hashes()
    return Readiness(len(shas) - len(_unprepared(project, shas, cache)), len(shas), project_backbone(project))


def embed_some(project: Project, limit: int = BATCH, *, unreadable: set[str] | None = None, threads: int | None = 1,
               cache: EmbeddingCache | None = None, should_stop: Callable[[], bool] | None = None) -> int:
    """Embed up to `limit` photos that lack an embedding; returns how many were tried (0: nothing left).

    One thread by default: the background must leave the other cores to the pages and to collection.
    What is missing is worked out once per call, from every kept photo's hash (about a second at 50,000 photos),
    so the worker asks for a few hundred at a time (`WORKER_CHUNK`): 16 at a time spent more time finding them
    than embedding them. `should_stop` is asked between batches of BATCH photos; those done by then stay cached.
    Photos that cannot be read are added to `unreadable` (content hashes) and not tried again; training
    reports them.
    """
    cache = cache or EmbeddingCache()
    unreadable = unreadable if unreadable is not None else set()
    todo = [r for r in missing(project, cache)[0] if r.sha256 not in unreadable][:limit]
    if todo:
        try:
            result = embed_views([r.path for r in todo], [r.sha256 for r in todo],
                                 get_backbone(project_backbone(project)), VIEWS, cache=cache, threads=threads,
                                 should_stop=should_stop)[0]
        except InterruptedError:
            return len(todo)
        unreadable.update(todo[i].sha256 for i in result.failed)
    return len(todo)

"""Embeddings ready before Train is clicked: what a project still lacks, and embedding some of it.

Every kept photo is embedded with the project's backbone as it is and mirrored (one decode for
both, and for every member of a joined backbone), so that training finds every vector in the cache. The training worker calls
`embed_some` between its jobs; pages call `readiness` to say how many photos are ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.model.backbones import DEFAULT_BACKBONE, get_backbone
from core.model.embed import BATCH, EmbeddingCache, embed_views, view_key
from core.store.project import ImageRecord, Project

VIEWS = (False, True)  # as is, mirrored: what a default training run reads


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
    """The kept photos that lack an embedding in some view, and how many kept photos there are."""
    records = project.images(status="kept")
    todo = _unprepared(project, [r.sha256 for r in records], cache)
    return [r for r in records if r.sha256 in todo], len(records)


def readiness(project: Project, cache: EmbeddingCache | None = None) -> Readiness:
    """How many kept photos training will find embedded already ("ready to train: 230 of 262"); from their
    hashes alone, as the pages ask every 2 s."""
    shas = project.kept_hashes()
    return Readiness(len(shas) - len(_unprepared(project, shas, cache)), len(shas), project_backbone(project))


def embed_some(project: Project, limit: int = BATCH, *, unreadable: set[str] | None = None, threads: int | None = 1,
               cache: EmbeddingCache | None = None) -> int:
    """Embed up to `limit` photos that lack an embedding; returns how many were tried (0: nothing left).

    One thread by default: the background must leave the other cores to the pages and to collection.
    Photos that cannot be read are added to `unreadable` (content hashes) and not tried again; training
    reports them.
    """
    cache = cache or EmbeddingCache()
    unreadable = unreadable if unreadable is not None else set()
    todo = [r for r in missing(project, cache)[0] if r.sha256 not in unreadable][:limit]
    if todo:
        result = embed_views([r.path for r in todo], [r.sha256 for r in todo], get_backbone(project_backbone(project)),
                             VIEWS, cache=cache, threads=threads)[0]
        unreadable.update(todo[i].sha256 for i in result.failed)
    return len(todo)

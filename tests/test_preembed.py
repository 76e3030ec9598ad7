"""'Ready to train' counts: which kept photos have every view embedded, read without the vectors themselves."""

import numpy as np
import pytest

from core.model import preembed
from core.model.backbones import get_backbone
from core.model.embed import EmbeddingCache, view_key
from core.store.project import create_project
from tests.photos import photo_bytes


def test_readiness_counts_photos_with_every_view_without_reading_vectors(tmp_path, monkeypatch):
    project = create_project("p", tmp_path)
    for i in range(6):
        project.add_image("cats" if i % 2 else "dogs", photo_bytes(i), source="upload")
    project.reject([project.images()[0].id])
    kept = project.images(status="kept")
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    spec = get_backbone(preembed.project_backbone(project))
    vector = np.ones(8, dtype=np.float32)
    for flip in preembed.VIEWS:  # three photos have both views, a fourth only the plain one
        cache.put(view_key(spec, flip), {r.sha256: vector for r in kept[:3]})
    cache.put(view_key(spec, False), {kept[3].sha256: vector})

    def no_vectors(self, key, shas):
        raise AssertionError("the count read every vector")

    monkeypatch.setattr(EmbeddingCache, "get", no_vectors)
    ready = preembed.readiness(project, cache)
    assert (ready.ready, ready.total, ready.complete) == (3, 5, False)
    assert {r.sha256 for r in preembed.missing(project, cache)[0]} == {r.sha256 for r in kept[3:]}


def test_the_idle_workers_look_for_missing_photos_reads_no_records_when_none_is_missing(tmp_path, monkeypatch):
    """Issue 23: the worker looks every few seconds; reading 50,000 photo records made each look 0.9 s of CPU."""
    from core.store.project import Project

    project = create_project("p", tmp_path)
    for i in range(4):
        project.add_image("cats" if i % 2 else "dogs", photo_bytes(i), source="upload")
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    spec = get_backbone(preembed.project_backbone(project))
    for flip in preembed.VIEWS:
        cache.put(view_key(spec, flip), {sha: np.ones(8, dtype=np.float32) for sha in project.kept_hashes()})

    def no_records(self, *args, **kwargs):
        raise AssertionError("every photo's record was read")

    monkeypatch.setattr(Project, "images", no_records)
    assert preembed.missing(project, cache) == ([], 4)
    assert preembed.embed_some(project, preembed.WORKER_CHUNK, cache=cache) == 0


def test_the_background_embedder_looks_less_often_while_nothing_comes_and_at_once_when_a_page_asks(tmp_path,
                                                                                                      monkeypatch):
    """An idle worker looked for missing photos every second: a third of a core at 50,000 photos. Now the wait
    doubles up to IDLE_POLL while nothing is missing; a page asking to watch a project wakes it, and so does the end."""
    import time

    from core.jobs import worker

    looks = []
    monkeypatch.setattr(preembed, "embed_some", lambda project, *args, **kwargs: looks.append(time.time()) or 0)
    monkeypatch.setattr(worker, "POLL", 0.05)
    monkeypatch.setattr(worker, "IDLE_POLL", 0.4)
    project = create_project("p", tmp_path)
    embedder = worker.Embedder()
    embedder.watch(project)
    embedder.start()
    time.sleep(2)
    assert 4 <= len(looks) <= 12, f"{len(looks)} looks in 2 s (one every 0.05 s would be 40)"
    monkeypatch.setattr(worker, "IDLE_POLL", 60)
    time.sleep(0.5)  # the wait in hand ends, and the next ones are long
    before = len(looks)
    embedder.watch(project)
    deadline = time.time() + 5
    while len(looks) == before and time.time() < deadline:
        time.sleep(0.01)
    assert len(looks) > before, "a page asking did not wake the embedder"
    embedder.stop()
    embedder.join(5)
    assert not embedder.is_alive()


def test_a_joined_project_is_ready_only_with_its_parts_keys_not_its_members_own(tmp_path):
    """A smaller member inside a joined backbone reads the joined size (core.model.joined.ResizedMember): a photo
    embedded with Lite0 alone is not ready for Lite0+Lite2, whose Lite0 vectors are made from 260 px pixels."""
    project = create_project("p", tmp_path)
    project.add_image("cats", photo_bytes(1), source="upload")
    project.set_backbone("efficientnet_lite0+efficientnet_lite2")
    sha = project.images()[0].sha256
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    vector = np.ones(8, dtype=np.float32)
    for name in ("efficientnet_lite0", "efficientnet_lite2"):
        for flip in preembed.VIEWS:
            cache.put(view_key(get_backbone(name), flip), {sha: vector})
    assert preembed.readiness(project, cache).ready == 0
    for flip in preembed.VIEWS:
        cache.put(f"efficientnet_lite0@224from260fitv4{'-flip' if flip else ''}", {sha: vector})
    assert preembed.readiness(project, cache).complete


def test_background_embedding_stops_between_batches_and_keeps_what_it_made(tmp_path):
    """The worker asks for a few hundred photos at a time (finding the missing ones costs about a second at 50,000
    photos); training must not wait for them all: `should_stop` ends the call after the batch in hand."""
    from core.model.embed import BATCH

    project = create_project("p", tmp_path)
    for i in range(BATCH + 4):
        project.add_image("cats" if i % 2 else "dogs", photo_bytes(i), source="upload")
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    asked = []
    tried = preembed.embed_some(project, preembed.WORKER_CHUNK, cache=cache,
                                should_stop=lambda: asked.append(1) or len(asked) > 1)  # yes from the 2nd batch
    assert tried == BATCH + 4
    assert preembed.readiness(project, cache).ready == BATCH  # the first batch stays cached
    assert preembed.embed_some(project, preembed.WORKER_CHUNK, cache=cache) == 4
    assert preembed.readiness(project, cache).complete


def test_cached_vectors_come_back_as_rows_of_one_read_only_array(tmp_path):
    """Issue 23: read as one small array per photo, 50,000 photos' vectors left 250 MB of heap behind that the
    process never gave back (the suspects check runs in the server). Rows of one array, in any stored precision."""
    for dtype in (np.float32, np.float16):
        cache = EmbeddingCache(tmp_path / f"{np.dtype(dtype).name}.sqlite", dtype=dtype)
        vectors = {f"{i:064x}": np.arange(8, dtype=np.float32) + i for i in range(1_200)}  # read 500 at a time
        cache.put("k", vectors)
        asked = [*vectors, "0" * 64]  # one never stored
        got = cache.get("k", asked)
        table, found = cache.table("k", [*asked[:3], asked[0]])  # a photo asked for twice gets its row twice
        assert found.all() and np.array_equal(table[3], table[0])
        assert got.keys() == vectors.keys()
        assert all(v.dtype == dtype and np.array_equal(v, vectors[sha].astype(dtype)) for sha, v in got.items())
        assert len({id(v.base) for v in got.values()}) == 1 and not any(v.flags.writeable for v in got.values())
        assert cache.get("other", asked) == {}


def test_vectors_all_read_from_the_cache_are_not_copied_again(tmp_path):
    """Issue 23: training read 50,000 photos' two views and held each twice (the cache's rows, then stacked in the
    photos' order): 2 GB in the worker. Rows are read into place in the photos' order; the result is that array."""
    import tracemalloc

    from core.model.embed import Group, cached_groups

    cache = EmbeddingCache(tmp_path / "e.sqlite")
    shas = [f"{i:064x}" for i in range(4_000)]
    cache.put("k", {sha: np.full(256, i, np.float32) for i, sha in enumerate(shas)})
    asked = shas[::-1]  # any order: rows come back in the asked one
    never = Group(8, {"k": lambda p: p}, lambda: pytest.fail("nothing is missing: no model is made"))
    tracemalloc.start()
    (result,), = cached_groups([tmp_path / "none"] * len(asked), asked, [never], cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.ok == list(range(len(asked)))
    assert np.array_equal(result.vectors[:, 0], np.arange(len(shas))[::-1])
    assert peak < 1.5 * result.vectors.nbytes  # one array of the vectors, not two

"""'Ready to train' counts: which kept photos have every view embedded, read without the vectors themselves."""

import numpy as np

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

"""Hostile files: PostScript, forged sizes, broken and lying zips, floods of non-photos (issue 12)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from core import images
from core.images import ImageRejected, decode_image, load_rgb
from core.intake.ingest import MAX_FILES_PER_IMPORT, ImportRefused, import_files, import_zip
from tests.hostile_files import EPS, HTML, bomb_zip_lying, forged_jpeg, forged_png, zip_with
from tests.photos import class_photo_bytes, photo_bytes, zip_bytes


@pytest.fixture
def no_ghostscript(monkeypatch) -> list:
    """Record (and refuse) every attempt to run Ghostscript."""
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("Ghostscript was run on an untrusted file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    return calls


@pytest.mark.parametrize("source", ["bytes", "path"])
def test_postscript_never_reaches_ghostscript(no_ghostscript, tmp_path, source):
    with pytest.raises(ImageRejected) as caught:
        decode_image(EPS)
    assert caught.value.reason == "not_image"
    eps_file = tmp_path / "photo.jpg"
    eps_file.write_bytes(EPS)
    with pytest.raises(ImageRejected) as caught:
        load_rgb(eps_file if source == "path" else EPS, 224)
    assert caught.value.reason == "not_image"
    assert no_ghostscript == []


def test_html_posing_as_jpeg_is_not_an_image():
    with pytest.raises(ImageRejected) as caught:
        decode_image(HTML)
    assert caught.value.reason == "not_image"


def test_any_decoder_failure_is_a_clean_rejection(monkeypatch):
    def explode(self):
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(ImageFile.ImageFile, "load", explode)
    with pytest.raises(ImageRejected) as caught:
        decode_image(photo_bytes(1))
    assert caught.value.reason == "truncated"


def test_forged_jpeg_size_is_decoded_reduced():
    data = forged_jpeg(7000, 8000)
    images.DECODE_BUDGET.reset_peak()
    try:
        decoded = decode_image(data)
    except ImageRejected as exc:  # refusing it is fine too
        assert exc.reason in ("too_large", "truncated")
        return
    assert decoded.image.width * decoded.image.height <= images.WORKING_PIXELS
    assert images.DECODE_BUDGET.peak <= images.WORKING_PIXELS


def test_big_png_is_reduced_after_decoding_and_hashes_like_a_photo():
    decoded = decode_image(forged_png(7000, 8400))
    assert decoded.image.width * decoded.image.height <= images.WORKING_PIXELS
    assert decoded.size == (7000, 8400)  # the original file is what is stored
    assert decoded.original_format == "PNG"


def test_decoding_threads_share_one_pixel_budget(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(forged_png(7000, 8400))
    images.DECODE_BUDGET.reset_peak()
    with ThreadPoolExecutor(16) as pool:
        arrays = list(pool.map(lambda _: load_rgb(path, 224), range(16)))
    assert all(a.shape == (224, 224, 3) for a in arrays)
    assert 0 < images.DECODE_BUDGET.peak <= images.DECODE_BUDGET.limit
    assert images.DECODE_BUDGET.in_use == 0


def test_load_rgb_applies_the_minimum_size(tmp_path):
    path = tmp_path / "tiny.png"
    Image.new("RGB", (16, 16), "red").save(path)
    with pytest.raises(ImageRejected) as caught:
        load_rgb(path, 224)
    assert caught.value.reason == "too_small"


def test_cli_train_data_skips_tiny_photos(tmp_path):
    from core.model.embed import _decoded_batches

    (tmp_path / "a").mkdir()
    Image.new("RGB", (16, 16), "red").save(tmp_path / "a" / "tiny.png")
    (tmp_path / "a" / "ok.jpg").write_bytes(class_photo_bytes(0, 1))
    paths = [tmp_path / "a" / "tiny.png", tmp_path / "a" / "ok.jpg"]
    ids, _, errors = next(_decoded_batches(paths, [0, 1], (64,), False))
    assert ids == [1] and list(errors) == [0]


# ---- zips -----------------------------------------------------------------------------------


def test_bad_zip_members_are_rejected_with_a_reason_and_the_rest_go_in(project):
    good = {f"cats/{i}.jpg": class_photo_bytes(0, i) for i in range(3)}
    bad = {"cats/corrupt.jpg": class_photo_bytes(0, 10), "cats/locked.jpg": class_photo_bytes(0, 11),
           "cats/deflate64.jpg": class_photo_bytes(0, 12)}
    archive = zip_with({**good, **bad}, corrupt={"cats/corrupt.jpg"}, encrypted={"cats/locked.jpg"},
                       deflate64={"cats/deflate64.jpg"})
    report = import_zip(project, io.BytesIO(archive))
    assert report.added == 3
    reasons = dict(report.rejected)
    assert set(reasons) == set(bad)
    assert "password" in reasons["cats/locked.jpg"]
    assert "compress" in reasons["cats/deflate64.jpg"]
    assert "corrupt" in reasons["cats/corrupt.jpg"]
    assert {r["original_name"] for r in project.rejected_inputs()} >= {"corrupt.jpg", "locked.jpg", "deflate64.jpg"}


def test_zip_directory_that_lies_about_sizes_is_read_under_a_cap(project):
    archive = bomb_zip_lying(members=2, size=40 * 1024 ** 2, extra={"cls/ok.jpg": class_photo_bytes(1, 1)})
    report = import_zip(project, io.BytesIO(archive))
    assert report.added == 1
    assert sorted(name for name, _ in report.rejected) == ["cls/bomb0.jpg", "cls/bomb1.jpg"]


def test_many_tiny_non_photos_import_in_one_batch(project, monkeypatch):
    batches: list[int] = []
    real = type(project).record_rejected_inputs

    def counting(self, rows):
        batches.append(len(rows))
        return real(self, rows)

    monkeypatch.setattr(type(project), "record_rejected_inputs", counting)
    files = {f"junk/{i}.jpg": b"not a photo %d" % i for i in range(2000)}
    files["junk/real.jpg"] = class_photo_bytes(0, 1)
    report = import_zip(project, io.BytesIO(zip_bytes(files)))
    assert report.added == 1 and len(report.rejected) == 2000
    assert sum(batches) == 2000 and len(batches) <= 5  # batches, not one transaction per file
    assert len(project.rejected_inputs(limit=5000)) == 2000


def test_too_many_files_in_one_import_are_refused_before_anything_is_written(project):
    files = [(f"{i}.jpg", b"x") for i in range(MAX_FILES_PER_IMPORT + 1)]
    with pytest.raises(ImportRefused, match="at most"):
        import_files(project, "cats", files)
    assert project.class_names() == []

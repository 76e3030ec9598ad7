"""Many distinct, decodable photos made from the real shared photo sets, for measuring how the app scales.

    python -m bench.scale_photos DEST N [--classes C] [--seed S]

Each photo is a real photo from ../shared/datasets (groceries25, flowers5, hymenoptera: 32 kinds) cropped
(55–100 % of each side, anywhere), maybe mirrored, with its brightness, colour and contrast changed and its
longest side set between 160 and 480 px, saved as JPEG at quality 80–92. So every file is distinct and its
perceptual hash looks like a real photo's. Class i draws from source kind i % 32; classes past 32 are the same
kinds under other names (a second "beans" class), so 100 classes are harder than 32 but still real photos.

About 1 % of the photos are planted near-duplicates: another photo of the set saved again a little smaller and at
another quality, in the same class or (one in three) another class, the way a user's folders hold the same
picture twice. `manifest.json` in DEST lists every planted pair, so a duplicate check can be scored. The set is
made once per (N, classes, seed) and reused when DEST already holds it.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.common import SHARED

SOURCE_SETS = ("groceries25/train", "flowers5/train", "flowers5/val", "hymenoptera/train", "hymenoptera/val")
SOURCE_SIDE = 512  # sources are reduced to this once: every photo made from them is smaller
NEAR_SHARE = 0.01  # of the photos made, planted near-duplicates
MANIFEST = "manifest.json"


def source_kinds(root: Path = SHARED) -> dict[str, list[Path]]:
    """The real photos by kind (class folder name), over every shared set and split."""
    kinds: dict[str, list[Path]] = {}
    for part in SOURCE_SETS:
        for folder in sorted((root / part).glob("*")):
            if folder.is_dir():
                kinds.setdefault(folder.name, []).extend(sorted(f for f in folder.iterdir() if f.is_file()))
    return kinds


@dataclass(frozen=True)
class PhotoSet:
    folder: Path                       # DEST/photos: one sub-folder per class (what an ImageFolder import reads)
    count: int                         # photos in all, planted copies included
    classes: int
    planted: list[tuple[str, str]]     # (original, copy) as paths relative to `folder`

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*/*.jpg"))


def _load(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.draft("RGB", (SOURCE_SIDE, SOURCE_SIDE))  # big JPEGs decode at a reduced scale: fast
        img = ImageOps.exif_transpose(img).convert("RGB")
    img.thumbnail((SOURCE_SIDE, SOURCE_SIDE))
    return img


def variant(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop, maybe mirrored, with other colours and another size: a distinct photo of the same thing."""
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.55, 1.0)), int(h * rng.uniform(0.55, 1.0))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.2))
    side = int(rng.integers(160, 481))
    scale = side / max(out.size)
    return out.resize((max(40, round(out.width * scale)), max(40, round(out.height * scale))),
                      Image.Resampling.BILINEAR)


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def class_names(classes: int, kinds: list[str]) -> list[str]:
    """'beans', …, then 'beans 2', … once every kind has a class."""
    return [kinds[i % len(kinds)] + (f" {i // len(kinds) + 1}" if i >= len(kinds) else "") for i in range(classes)]


def make_photos(dest: Path, count: int, classes: int | None = None, seed: int = 0,
                progress: bool = False) -> PhotoSet:
    """`count` photos (planted near-duplicates included) in `classes` class folders under DEST/photos."""
    classes = classes or min(100, max(2, count // 100))
    dest = Path(dest)
    manifest = dest / MANIFEST
    wanted = {"count": count, "classes": classes, "seed": seed}
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if {k: saved.get(k) for k in wanted} == wanted:
            return PhotoSet(dest / "photos", count, classes, [tuple(p) for p in saved["planted"]])
        raise SystemExit(f"{dest} holds another photo set ({saved}); give an empty folder")
    kinds = source_kinds()
    if not kinds:
        raise SystemExit(f"{SHARED} has no photos: the scale bench makes its photos from the shared sets")
    names = class_names(classes, sorted(kinds))
    rng = np.random.default_rng(seed)
    planted_n = max(1, round(count * NEAR_SHARE))
    distinct = count - planted_n
    per_class = np.full(classes, distinct // classes)
    per_class[: distinct % classes] += 1
    made: list[Path] = []
    for c, name in enumerate(names):
        folder = dest / "photos" / name
        folder.mkdir(parents=True, exist_ok=True)
        paths = kinds[sorted(kinds)[c % len(kinds)]]
        picks = rng.choice(len(paths), per_class[c], replace=per_class[c] > len(paths))
        for order in np.unique(picks):  # each source decoded once for all its variants
            source = _load(paths[order])
            for j in range(int((picks == order).sum())):
                target = folder / f"{paths[order].stem}-{len(made):06d}.jpg"
                target.write_bytes(_jpeg(variant(source, rng), int(rng.integers(80, 93))))
                made.append(target)
        if progress:
            print(f"\r  made {len(made):,} of {count:,} photos", end="", flush=True)
    planted = []
    for original in rng.choice(len(made), planted_n, replace=False):
        src = made[original]
        with Image.open(src) as img:
            img = img.convert("RGB")
        copy = img.resize((round(img.width * 0.9), round(img.height * 0.9)), Image.Resampling.LANCZOS)
        folder = src.parent if rng.random() < 2 / 3 else dest / "photos" / names[int(rng.integers(classes))]
        target = folder / f"copy-{src.stem}.jpg"
        target.write_bytes(_jpeg(copy, 75))
        planted.append((src.relative_to(dest / "photos").as_posix(), target.relative_to(dest / "photos").as_posix()))
    if progress:
        print()
    manifest.write_text(json.dumps({**wanted, "planted": planted}))
    return PhotoSet(dest / "photos", count, classes, planted)


if __name__ == "__main__":
    args = sys.argv[1:]
    n_classes = int(args[args.index("--classes") + 1]) if "--classes" in args else None
    seed_arg = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
    made_set = make_photos(Path(args[0]), int(args[1]), n_classes, seed_arg, progress=True)
    print(f"{made_set.count:,} photos in {made_set.classes} classes, {len(made_set.planted)} planted copies: "
          f"{made_set.folder}")

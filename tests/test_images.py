import io

import numpy as np
import pytest
from PIL import Image

from core.images import ImageRejected, decode_image, load_rgb, phash_distance, perceptual_hash
from tests.photos import photo, photo_bytes


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_plain_jpeg_is_kept_byte_for_byte():
    data = photo_bytes(1)
    decoded = decode_image(data)
    assert decoded.stored_bytes == data and decoded.extension == ".jpg"
    assert (decoded.width, decoded.height) == (240, 180)


def test_exif_orientation_is_applied():
    img = photo(2, (200, 100))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    decoded = decode_image(save(img, "JPEG", exif=exif))
    assert (decoded.width, decoded.height) == (100, 200)
    assert Image.open(io.BytesIO(decoded.stored_bytes)).size == (100, 200)


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "L", "CMYK", "1"])
def test_modes_become_rgb(mode):
    img = photo(3).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    decoded = decode_image(save(img, fmt))
    assert decoded.image.mode == "RGB"
    assert Image.open(io.BytesIO(decoded.stored_bytes)).mode == "RGB"


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    decoded = decode_image(save(img, "PNG"))
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)


def test_sixteen_bit_grayscale_keeps_its_range():
    gradient = (np.linspace(0, 65535, 128 * 64).reshape(64, 128)).astype(np.uint16)
    decoded = decode_image(save(Image.fromarray(gradient), "PNG"))
    values = np.asarray(decoded.image)[..., 0]
    assert values.min() == 0 and values.max() == 255


def test_animation_uses_first_frame():
    frames = [photo(i, (64, 64)).convert("P") for i in (4, 5)]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(data)
    assert decoded.image.size == (64, 64) and decoded.extension == ".jpg"


def test_webp_is_reencoded_as_jpeg():
    decoded = decode_image(photo_bytes(6, "WEBP"))
    assert decoded.extension == ".jpg" and decoded.stored_bytes[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"<html><body>not a photo</body></html>", "not_image"),
        (photo_bytes(7)[:1500], "truncated"),
        (photo_bytes(8, size=(20, 200)), "too_small"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageRejected) as err:
        decode_image(data)
    assert err.value.reason == reason and str(err.value)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = save(Image.new("L", (10_000, 10_000)), "PNG")  # 100 MP of zeros compresses to ~100 KB
    with pytest.raises(ImageRejected) as err:
        decode_image(bomb)
    assert err.value.reason == "too_large"


def test_perceptual_hash_survives_resize_but_not_new_content():
    original = photo(9, (400, 300))
    resized = original.resize((200, 150))
    assert phash_distance(perceptual_hash(original), perceptual_hash(resized)) <= 4
    assert phash_distance(perceptual_hash(original), perceptual_hash(photo(10, (400, 300)))) > 12


def test_load_rgb_takes_the_centre_square():
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (100, 0, 150, 100))  # a centre square, blue then cyan, between red sides:
    wide.paste((0, 255, 255), (150, 0, 200, 100))  # lopsided, so its mirror image differs
    array = load_rgb(save(wide, "PNG"), 64)
    assert array.shape == (64, 64, 3) and array.dtype == np.uint8
    assert (array[..., 2] > 200).all() and (array[..., 0] < 50).all()
    assert (load_rgb(wide, 64, flip=True) == array[:, ::-1]).all()

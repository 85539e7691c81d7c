import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from epaiqa.data.images import ALPHA_BACKGROUND, MAX_PIXELS_ENV, check_image, load_rgb
from epaiqa.errors import ConfigError, DataError


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes, idat: bool = True) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB), filter 0 on every row."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    stride = len(raw) // height if height and raw else 0
    rows = b"".join(b"\x00" + raw[i * stride : (i + 1) * stride] for i in range(height)) if raw else b""
    body = chunk(b"IDAT", zlib.compress(rows)) if idat else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


def grey16_gradient(path: Path) -> np.ndarray:
    values = np.linspace(0, 65535, 256 * 16).round().astype(np.uint16).reshape(16, 256)
    Image.fromarray(values).save(path)
    return values


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = grey16_gradient(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    clipped = np.asarray(Image.open(tmp_path / "g16.png").convert("RGB"))
    assert (clipped == 255).mean() > 0.9  # what a bare convert("RGB") does
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 256, 3)
    assert rgb.min() == 0 and rgb.max() == 255
    assert abs(rgb[..., 0].mean() - 127.5) < 1.0
    assert (rgb == 255).mean() < 0.01
    expected = np.rint(values.astype(np.float64) * 255 / 65535)
    assert np.abs(rgb[..., 1] - expected).max() <= 1


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_other_wide_grey_modes_use_the_16_bit_rule(tmp_path: Path, mode: str) -> None:
    raw = np.array([[0, 1000, 32768, 65535]], dtype=">u2" if mode == "I;16B" else np.int32)
    img = Image.frombytes(mode, (4, 1), raw.tobytes()) if mode == "I;16B" else Image.fromarray(raw, "I")
    img.save(tmp_path / "w.tif")
    rgb = np.asarray(load_rgb(tmp_path / "w.tif"))[0, :, 0]
    assert rgb.tolist() == [0, 4, 128, 255]


def test_mode_i_within_8_bit_range_is_kept(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), "I").save(tmp_path / "i.tif")
    assert np.asarray(load_rgb(tmp_path / "i.tif"))[0, :, 0].tolist() == [0, 100, 255]


def test_16_bit_rgb_png_keeps_its_colours(tmp_path: Path) -> None:
    pixels = np.zeros((2, 2, 3), dtype=">u2")
    pixels[0, 0] = [65535, 32768, 0]
    pixels[1, 1] = [1000, 20000, 50000]
    (tmp_path / "rgb16.png").write_bytes(png_bytes(2, 2, 16, 2, pixels.tobytes()))
    assert Image.open(tmp_path / "rgb16.png").mode == "RGB"  # Pillow keeps the high byte
    rgb = np.asarray(load_rgb(tmp_path / "rgb16.png")).astype(int)
    assert rgb[0, 0].tolist() == [255, 128, 0]
    assert np.abs(rgb[1, 1] - np.array([1000, 20000, 50000]) * 255 / 65535).max() <= 1


def exif6_jpeg(path: Path) -> None:
    """Stored 100x60 with a red top-left block; orientation 6 shows it rotated 90° clockwise."""
    img = Image.new("RGB", (100, 60), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, exif=exif, quality=95)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif6_jpeg(tmp_path / "e6.jpg")
    assert Image.open(tmp_path / "e6.jpg").size == (100, 60)
    rgb = load_rgb(tmp_path / "e6.jpg")
    assert rgb.size == (60, 100)
    r, _, b = rgb.getpixel((55, 4))  # the stored top-left corner is now top-right
    assert r > 200 and b < 60
    r, _, b = rgb.getpixel((4, 4))
    assert r < 60 and b > 200
    assert check_image(tmp_path / "e6.jpg") == (None, (60, 100))


def test_palette_transparency_becomes_the_background(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    img.paste(1, (0, 0, 2, 4))
    img.save(tmp_path / "p.png", transparency=0)
    rgb = np.asarray(load_rgb(tmp_path / "p.png"))
    assert rgb[0, 0].tolist() == [200, 10, 10]
    assert rgb[0, 3].tolist() == list(ALPHA_BACKGROUND) == [255, 255, 255]


def test_rgba_and_la_are_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0] = [[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = np.asarray(load_rgb(tmp_path / "a.png")).astype(int)
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert np.abs(rgb[0, 2] - 127).max() <= 1  # half-transparent black on white
    Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA").save(tmp_path / "la.png")
    assert np.asarray(load_rgb(tmp_path / "la.png"))[0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_16_bit_grey_with_transparent_value(tmp_path: Path) -> None:
    values = np.array([[0, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "t.png", transparency=0)
    assert np.asarray(load_rgb(tmp_path / "t.png"))[0].tolist() == [[255, 255, 255], [255, 255, 255]]
    values = np.array([[0, 30000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "t.png", transparency=30000)
    assert np.asarray(load_rgb(tmp_path / "t.png"))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def two_frames(path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)


@pytest.mark.parametrize("name", ["a.gif", "a.webp", "a.png"])
def test_animated_files_are_refused(tmp_path: Path, name: str) -> None:
    two_frames(tmp_path / name)
    with pytest.raises(DataError, match=r"a\.\w+: is animated \(2 frames\)"):
        load_rgb(tmp_path / name)
    assert check_image(tmp_path / name)[0] == "is animated (2 frames); only still images are accepted"


def test_single_frame_gif_is_fine(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6), (255, 0, 0)).save(tmp_path / "s.gif")
    assert load_rgb(tmp_path / "s.gif").getpixel((0, 0)) == (255, 0, 0)
    assert check_image(tmp_path / "s.gif") == (None, (8, 6))


def test_pixel_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(20000, 20000, 1, 0, b"", idat=False))  # 400 MP claimed, no pixel data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        problem, size = check_image(path)
        with pytest.raises(DataError) as err:
            load_rgb(path)
    assert size is None
    assert problem.startswith("is 20000x20000 = 400,000,000 pixels, over the limit of 64,000,000")
    assert str(err.value).startswith(f"{path}: is 20000x20000") and "\n" not in str(err.value)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own limit is restored


def test_pixel_limit_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "x.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    assert check_image(tmp_path / "x.png")[0] == (
        "is 40x30 = 1,200 pixels, over the limit of 1,000 (set EPAIQA_MAX_PIXELS to raise it)"
    )
    monkeypatch.setenv(MAX_PIXELS_ENV, "1200")
    assert check_image(tmp_path / "x.png") == (None, (40, 30))
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match="EPAIQA_MAX_PIXELS must be a positive whole number"):
        check_image(tmp_path / "x.png")


def test_corrupt_truncated_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name in ("text.jpg", "cut.jpg"):
        problem, size = check_image(tmp_path / name)
        assert problem.startswith("does not decode as an image") and size is None, problem
        with pytest.raises(DataError, match=rf"^{tmp_path / name}: does not decode as an image"):
            load_rgb(tmp_path / name)
    assert check_image(tmp_path / "none.jpg") == ("file not found", None)
    assert check_image(tmp_path) == ("is not a file", None)
    assert check_image(tmp_path / "ok.jpg") == (None, (64, 64))


def test_load_rgb_returns_a_detached_8_bit_rgb_image(tmp_path: Path) -> None:
    Image.new("L", (5, 3), 77).save(tmp_path / "l.png")
    img = load_rgb(tmp_path / "l.png")
    (tmp_path / "l.png").unlink()
    assert img.mode == "RGB" and img.size == (5, 3) and img.getpixel((4, 2)) == (77, 77, 77)

"""Reading every supported image kind, rejecting bad files with one clear line, input expansion and naming."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autocolor.batchpaths import expand_inputs, plan_outputs
from autocolor.imageio import ImageError, from_array, read_image, write_image

H, W = 40, 56


def ramp(dtype=np.uint8) -> np.ndarray:
    """A deterministic (H, W) grey ramp with texture."""
    rng = np.random.default_rng(0)
    top = 255 if dtype == np.uint8 else 65535
    base = np.linspace(0.1, 0.9, W)[None, :] * np.ones((H, 1)) + rng.uniform(-0.05, 0.05, (H, W))
    return np.clip(base * top, 0, top).astype(dtype)


def colour_image() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), "RGB")


def test_grey_8bit(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    Image.fromarray(ramp(), "L").save(path)
    photo = read_image(path)
    assert photo.pixels.shape == (H, W) and photo.alpha is None and not photo.colour
    np.testing.assert_allclose(photo.pixels, ramp() / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_grey_16bit_keeps_precision(tmp_path: Path, mode: str) -> None:
    arr = ramp(np.uint16)
    img = Image.fromarray(arr) if mode == "I;16" else Image.fromarray(arr.astype(np.int32))
    path = tmp_path / ("g16.png" if mode == "I;16" else "g32.tif")
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == mode  # really stored with more than 8 bits
    photo = read_image(path)
    np.testing.assert_allclose(photo.pixels, arr / 65535.0, atol=1e-6)
    assert len(np.unique(photo.pixels)) > 256  # not squashed to 8 bits


def test_grey_alpha(tmp_path: Path) -> None:
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    img = Image.merge("LA", [Image.fromarray(ramp(), "L"), Image.fromarray(alpha, "L")])
    path = tmp_path / "la.png"
    img.save(path)
    photo = read_image(path)
    assert photo.pixels.shape == (H, W)
    np.testing.assert_array_equal(photo.alpha, alpha)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.fromarray(ramp(), "L").convert("P")
    idx = np.asarray(img)
    img.info["transparency"] = int(idx[0, 0])
    path = tmp_path / "p.png"
    img.save(path, transparency=int(idx[0, 0]))
    photo = read_image(path)
    assert photo.alpha is not None and photo.alpha[0, 0] == 0 and (photo.alpha == 255).any()
    assert not photo.colour


def test_palette_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((H, W), v, np.uint8), "L").convert("P") for v in (40, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    photo = read_image(path)
    assert abs(float(photo.pixels.mean()) - 40 / 255) < 2 / 255


def test_grey_rgb_is_not_colour(tmp_path: Path) -> None:
    path = tmp_path / "greyrgb.jpg"
    Image.fromarray(ramp(), "L").convert("RGB").save(path, quality=85)
    photo = read_image(path)
    assert not photo.colour and photo.pixels.shape == (H, W)


def test_colour_rgb_flagged(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    colour_image().save(path)
    photo = read_image(path)
    assert photo.colour and photo.pixels.shape == (H, W, 3)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(ramp(), "L").convert("RGB").convert("CMYK").save(path, quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    photo = read_image(path)
    assert photo.size == (W, H)
    assert np.abs(photo.pixels.reshape(H, W, -1).mean(-1) - ramp() / 255.0).mean() < 0.03


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.fromarray(ramp(), "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    photo = read_image(path)
    assert photo.size == (H, W)  # upright: width and height swapped


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif", "bmp", "gif"])
def test_container_formats(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"x.{ext}"
    Image.fromarray(ramp(), "L").save(path)
    photo = read_image(path)
    assert photo.size == (W, H)
    assert np.abs(photo.pixels - ramp() / 255.0).mean() < 0.02


@pytest.mark.parametrize("kind, message", [
    ("empty", "empty file"),
    ("truncated", "truncated"),
    ("text", "not an image"),
    ("missing", "no such file"),
    ("folder", "is a folder"),
])
def test_bad_files(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(ramp(), "L").save(buf, "PNG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "text":
        path.write_text("hello, not a picture\n")
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(ImageError) as info:
        read_image(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    colour_image().save(buf, "JPEG")
    path = tmp_path / "t.jpg"
    path.write_bytes(buf.getvalue()[:300])
    with pytest.raises(ImageError, match="t.jpg"):
        read_image(path)


def test_decompression_bomb_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(path)
    with pytest.raises(ImageError, match="decompression bomb"):
        read_image(path, max_pixels=100_000)
    assert read_image(path, max_pixels=120_000).size == (400, 300)


def test_from_array_shapes_and_dtypes() -> None:
    g = ramp()
    assert from_array(g).pixels.shape == (H, W)
    assert from_array(g.astype(np.uint16) * 257).pixels.max() == pytest.approx(g.max() / 255, abs=1e-6)
    rgba = np.dstack([g, g, g, np.full_like(g, 128)])
    photo = from_array(rgba)
    assert not photo.colour and (photo.alpha == 128).all()
    with pytest.raises(ImageError, match="shape"):
        from_array(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageError, match="dtype"):
        from_array(np.zeros((4, 4), np.int64))
    assert from_array(g / 255.0).pixels.max() == pytest.approx(g.max() / 255, abs=1e-6)
    with pytest.raises(ImageError, match="reaches 255; divide 0-255 data by 255"):
        from_array(np.full((4, 4), 255.0))
    overshoot = np.full((4, 4), 0.5)
    overshoot[0, 0], overshoot[0, 1] = 1.02, np.inf  # resizing overshoot and a stray inf: clipped, not refused
    assert from_array(overshoot).pixels.max() == 1.0


def test_expand_inputs_files_folders_globs(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for rel in ["a/one.png", "a/deep/two.jpg", "a/notes.txt", "b.png", "a/.hidden.png"]:
        (tmp_path / rel).write_bytes(b"x")
    files, errors = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.png"), str(tmp_path / "b.png"),
                                   str(tmp_path / "nope.png"), str(tmp_path / "*.gif")])
    names = [p.name for p in files]
    assert names == ["two.jpg", "one.png", "b.png"]  # recursive, image suffixes, hidden skipped, deduplicated
    assert len(errors) == 2 and "nope.png" in errors[0] and "*.gif" in errors[1]


def test_expand_inputs_skips_output_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "in.png").write_bytes(b"x")
    (tmp_path / "out" / "in.png").write_bytes(b"x")
    files, _ = expand_inputs([str(tmp_path)], exclude=tmp_path / "out")
    assert files == [tmp_path / "in.png"]


def test_plan_outputs_distinct_names(tmp_path: Path) -> None:
    ins = [Path("x/cat.png"), Path("y/cat.jpg"), Path("z/cat-1.png"), Path("CAT.bmp")]
    outs = plan_outputs(ins, tmp_path, "png")
    assert [o.name for o in outs] == ["cat.png", "cat-1.png", "cat-1-1.png", "CAT-2.png"]
    assert len({o.name.lower() for o in outs}) == len(outs)


def test_plan_outputs_leave_kept_folder_names_and_existing_folders_alone(tmp_path: Path) -> None:
    ins = [Path("in/x.jpg"), Path("in/x.png/photo.jpg"), Path("in/y.jpg")]  # a folder named like x.jpg's output
    out = tmp_path / "out"
    (out / "y.png").mkdir(parents=True)  # a folder already in OUTDIR, named like y.jpg's output
    outs = plan_outputs(ins, out, "png", {ins[1]: Path("x.png")})
    assert outs == [out / "x-1.png", out / "x.png" / "photo.png", out / "y-1.png"]
    assert plan_outputs(ins, out, "png") == [out / "x.png", out / "photo.png", out / "y-1.png"]


def test_write_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "o.png"
    img = Image.new("RGB", (4, 4), (10, 20, 30))
    write_image(img, path)
    with pytest.raises(ImageError, match="already exists"):
        write_image(img, path)
    write_image(Image.new("RGB", (4, 4), (200, 20, 30)), path, overwrite=True)
    with Image.open(path) as back:
        assert back.getpixel((0, 0)) == (200, 20, 30)


def test_max_pixels_above_pillows_own_limit_is_honoured() -> None:
    from autocolor import imageio

    pillow = Image.MAX_IMAGE_PIXELS
    with imageio._pillow_limit(pillow * 4):
        assert Image.MAX_IMAGE_PIXELS == pillow * 4  # Pillow's bomb error now starts beyond --max-pixels
    with imageio._pillow_limit(1000):
        assert Image.MAX_IMAGE_PIXELS == pillow  # a lower limit is ours alone
    assert Image.MAX_IMAGE_PIXELS == pillow


def test_read_image_opens_what_pillow_alone_calls_a_bomb(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (100, 100), 128).save(path)  # 10,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone refuses beyond 2,000 (a stand-in for 179 Mpx)
    with pytest.raises(Image.DecompressionBombError):
        with Image.open(path) as im:
            im.load()
    assert read_image(path, max_pixels=20_000).pixels.shape[:2] == (100, 100)  # --max-pixels raised above it
    with pytest.raises(ImageError, match="pixels"):
        read_image(path, max_pixels=5_000)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_atomic_write_names_the_problem(tmp_path: Path) -> None:
    from autocolor.files import atomic_write_bytes

    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="f is a file, not a folder"):
        atomic_write_bytes(tmp_path / "f" / "sub" / "out.png", b"data")
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        atomic_write_bytes(tmp_path, b"data")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_too_large_for_the_format_is_one_line_per_file(tmp_path: Path) -> None:
    wide = Image.new("RGB", (16384, 2), (10, 20, 30))
    with pytest.raises(ImageError, match=r"16384x2 is too large for webp \(at most 16,383 pixels a side\); use "
                                         r"--format png"):
        write_image(wide, tmp_path / "w.webp")
    assert list(tmp_path.iterdir()) == []
    assert write_image(wide, tmp_path / "w.png").is_file()


def test_colour_key_transparency_in_grey_and_rgb_images_is_kept(tmp_path: Path) -> None:
    grey = ramp()
    grey[0, :3] = 0
    Image.fromarray(grey).save(tmp_path / "l.png", transparency=0)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "i16.png", transparency=0)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    Image.fromarray(grey).save(tmp_path / "none.png", transparency=7)  # a key no pixel has: no alpha
    for name in ("l.png", "i16.png", "rgb.png"):
        photo = read_image(tmp_path / name)
        assert photo.alpha is not None and int((photo.alpha == 0).sum()) == 3, name
        assert photo.alpha[0, :3].tolist() == [0, 0, 0] and int(photo.alpha[1:].min()) == 255
    assert read_image(tmp_path / "none.png").alpha is None


def test_32_bit_and_float_grey_files_keep_their_lightness(tmp_path: Path) -> None:
    grey = ramp()
    want = grey.astype(np.float32) / 255
    Image.fromarray(grey.astype(np.int32), "I").save(tmp_path / "i32.tif")  # 0-255 values in a 32-bit file
    Image.fromarray(grey.astype(np.int32) * 257, "I").save(tmp_path / "i32_16.tif")  # 16-bit values
    f = want.copy()
    f[0, 0] = 1.05  # a [0, 1] float image with a resampling overshoot
    Image.fromarray(f, "F").save(tmp_path / "f01.tif")
    Image.fromarray(grey.astype(np.float32), "F").save(tmp_path / "f255.tif")
    for name in ("i32.tif", "i32_16.tif", "f01.tif", "f255.tif"):
        got = read_image(tmp_path / name).pixels
        assert np.abs(got - want)[1:].max() < 1e-6 and got[0, 0] >= want[0, 0], name


def test_metadata_keeps_what_describes_the_photo(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[306], exif[271], exif[0x0112] = "2001:02:03 04:05:06", "ScanCo", 6
    exif[0x8769] = {0x9003: "2001:02:03 04:05:06", 0xA002: 56, 0xA003: 40}  # capture date; pre-rotation size
    Image.fromarray(ramp()).save(tmp_path / "cam.jpg", exif=exif.tobytes(), dpi=(600, 600))
    Image.fromarray(ramp()).save(tmp_path / "tags.tif", dpi=(300, 300))  # dpi as IFDRationals
    Image.fromarray(ramp()).save(tmp_path / "untagged.tif")  # Pillow says (1, 1) dpi: not the scan's
    cam, tags, untagged = (read_image(tmp_path / n).meta for n in ("cam.jpg", "tags.tif", "untagged.tif"))
    kept = Image.Exif()
    kept.load(cam["exif"])
    assert dict(kept) == {306: "2001:02:03 04:05:06", 271: "ScanCo", 0x8769: kept[0x8769]}
    assert kept.get_ifd(0x8769) == {0x9003: "2001:02:03 04:05:06"} and cam["dpi"] == (600.0, 600.0)
    assert tags == {"dpi": (300.0, 300.0)}  # a TIFF's own tags (strips, bit depth...) are not EXIF to copy
    assert untagged == {}


def test_jpeg_leaves_out_metadata_beyond_its_limits(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[270] = "x" * 70_000  # more than JPEG's 64 KB EXIF segment
    img = Image.new("RGB", (8, 8), (10, 20, 30))
    img.info.update({"exif": exif.tobytes(), "dpi": (72000.0, 72000.0)})
    with Image.open(write_image(img, tmp_path / "o.jpg")) as out:
        assert "dpi" not in out.info and not dict(out.getexif())  # the photo is written, without them
    with Image.open(write_image(img, tmp_path / "o.png")) as out:
        assert out.getexif()[270] == "x" * 70_000 and round(out.info["dpi"][0]) == 72000


def test_odd_colour_keys_and_16_bit_png_in_mode_i(tmp_path: Path) -> None:
    from autocolor.imageio import from_pil

    bits = Image.fromarray(np.eye(4, dtype=bool)).convert("1")
    bits.save(tmp_path / "b.png", transparency=1)
    assert read_image(tmp_path / "b.png").alpha.tolist() == (np.where(np.eye(4), 0, 255)).tolist()
    rgb = Image.new("RGB", (4, 4), (255, 0, 0))
    rgb.info["transparency"] = (65535, 0, 0)  # a 16-bit PNG's key on the 8-bit pixels Pillow gives
    assert from_pil(rgb).alpha is None
    dark = Image.fromarray(np.full((4, 4), 189, np.int32), "I")
    dark.format = "PNG"  # Pillow 10 opens 16-bit grey PNG as mode I: its values are out of 65535
    assert np.allclose(from_pil(dark).pixels, 189 / 65535)
    dark.format = None  # an int32 array of 8-bit values
    assert np.allclose(from_pil(dark).pixels, 189 / 255)


def _grey_profile(gamma: float) -> bytes:
    """A minimal ICC v2 grey display profile (description, white point, one gamma curve)."""
    import struct

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    white = s15(0.9642) + s15(1.0) + s15(0.8249)
    text = b"grey test\0"
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67)),
            (b"wtpt", b"XYZ " + bytes(4) + white),
            (b"kTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2))]
    table, data, start = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        data += bytes(-(start + len(data)) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data
    header = (struct.pack(">I", 128 + len(body)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrGRAYXYZ " + bytes(12)
              + b"acspAPPL" + bytes(24) + white + bytes(48))
    assert len(header) == 128
    return header + body


def test_embedded_icc_profiles_are_converted_to_srgb(tmp_path: Path) -> None:
    grey = np.full((H, W), 128, np.uint8)
    Image.fromarray(grey).save(tmp_path / "linear.png", icc_profile=_grey_profile(1.0))  # linear light: 128 is bright
    Image.fromarray(grey).save(tmp_path / "plain.png")
    Image.fromarray(grey).save(tmp_path / "broken.png", icc_profile=b"not a profile")
    linear = read_image(tmp_path / "linear.png")
    assert not linear.colour and abs(float(linear.pixels.mean()) * 255 - 188) < 1.5  # sRGB of linear 0.502
    for name in ("plain.png", "broken.png"):
        assert np.allclose(read_image(tmp_path / name).pixels, 128 / 255)


def test_srgb_profiles_are_taken_as_they_are_and_training_reads_profiles_too(tmp_path: Path, monkeypatch) -> None:
    from PIL import ImageCms

    from autocolor import imageio
    from autocolor.folders import open_rgb

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = Image.fromarray(np.stack([ramp()] * 3, axis=-1))
    rgb.info["icc_profile"] = srgb
    monkeypatch.setattr(ImageCms, "profileToProfile", lambda *a, **k: pytest.fail("sRGB was converted"))
    assert imageio.to_srgb(rgb) is rgb
    monkeypatch.undo()
    Image.fromarray(np.full((H, W), 128, np.uint8)).save(tmp_path / "linear.png", icc_profile=_grey_profile(1.0))
    assert abs(float(np.asarray(open_rgb(str(tmp_path / "linear.png"), 32)).mean()) - 188) < 1.5

"""Reading, validating and writing user photos (Pillow).

Every way a file can be bad (missing, empty, truncated, not an image, too many pixels) becomes an
``ImageError`` naming the file, so a batch can report it in one line and go on with the next file.
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from autocolor.errors import AutocolorError, first_line
from autocolor.files import atomic_write_bytes

DEFAULT_MAX_PIXELS = 64_000_000
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
ALPHA_FORMATS = {"png", "webp"}
MAX_SIDE = {"jpg": 65500, "webp": 16383}  # the encoders' own limits (PNG has none that matters here)


class ImageError(AutocolorError):
    """One input or output file could not be handled; the message names the file."""


@dataclass
class Photo:
    """A decoded photo: ``rgb`` float32 (H, W, 3) or grey float32 (H, W) in [0, 1], optional alpha."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None  # uint8 (H, W)
    colour: bool = False  # the input had colour (only its lightness is used)
    source: str = "<image>"
    frames: int = 1  # an animated file's frame count (only the first frame is used)
    meta: dict = field(default_factory=dict)  # "dpi" and "exif" (orientation removed) to write with the result

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.pixels.shape[1], self.pixels.shape[0]


def _alpha_u8(band: Image.Image) -> np.ndarray:
    return np.asarray(band.convert("L"), dtype=np.uint8).copy()


def _is_colour(rgb: np.ndarray) -> bool:
    """True when the channels differ by more than JPEG noise (mean spread above 2 levels of 255)."""
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float(spread.mean()) > 2.0 / 255.0


def _int_scale(img: Image.Image, top: float) -> float:
    """What a mode-I image's values are out of: 65535 for PNG and PGM (16-bit formats, which older Pillow opens as
    mode I); otherwise (32-bit TIFFs, arrays) 255 when every value fits 8 bits, else 65535, else 2**32 - 1."""
    if getattr(img, "format", None) in ("PNG", "PPM"):
        return 65535.0
    return 255.0 if top <= 255 else 65535.0 if top <= 65535 else 4294967295.0


def _key_alpha(img: Image.Image) -> np.ndarray | None:
    """uint8 alpha for a grey or RGB image whose ``transparency`` names one colour as transparent, else None."""
    key = img.info.get("transparency")
    if key is None or img.mode not in ("1", "L", "I", "RGB") and not img.mode.startswith("I;16"):
        return None
    arr = np.asarray(img.convert("L") if img.mode == "1" else img).astype(np.int64)  # Pillow gives "1" keys as 255
    if img.mode == "RGB":
        if not (isinstance(key, tuple) and len(key) == 3):
            return None
        hit = np.all(arr == np.asarray(key, dtype=np.int64), axis=-1)  # a 16-bit key on 8-bit pixels matches none
    elif isinstance(key, int):
        hit = arr == ((255 if key else 0) if img.mode == "1" else key)
    else:
        return None
    return np.where(hit, 0, 255).astype(np.uint8) if hit.any() else None


def metadata(img: Image.Image) -> dict:
    """What a colorized copy keeps of ``img``: its resolution (``dpi``) and EXIF (dates, camera...) without the
    orientation tag, since pixels are read upright. Unreadable EXIF is left out."""
    meta: dict = {}
    dpi = img.info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2 and all(isinstance(v, numbers.Real) for v in dpi) and _real_dpi(img):
        values = (float(dpi[0]), float(dpi[1]))  # TIFF gives IFDRationals
        if all(math.isfinite(v) and 1 <= v <= MAX_DPI for v in values):
            meta["dpi"] = values
    try:
        exif = _photo_exif(img.getexif())
        if len(exif):
            meta["exif"] = exif.tobytes()
    except Exception:  # noqa: BLE001 - broken EXIF in a camera file: the photo is still colorized, without it
        pass
    return meta


EXIF_KEPT = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, software, date, artist, copyright
EXIF_IFDS = (0x8769, 0x8825)  # the Exif sub-IFD (capture date, exposure...) and GPS
EXIF_DROPPED = (0xA002, 0xA003, 0xA005, 0x927C)  # pre-rotation pixel sizes; Interop and MakerNote hold file offsets
MAX_DPI = 65535  # JPEG's field; more is not a real resolution


def _real_dpi(img: Image.Image) -> bool:
    """Whether the image's ``dpi`` was stated by its file: Pillow fills in (1, 1) for an untagged TIFF, and 72 for
    a JPEG whose JFIF gives no unit and whose EXIF resolution it cannot use (no unit, a zero denominator). Also for
    copies, which keep ``info`` but not the format or TIFF tags."""
    info = img.info
    if getattr(img, "format", None) == "TIFF" and hasattr(img, "tag_v2"):
        return 282 in img.tag_v2
    if getattr(img, "format", None) == "JPEG" or "jfif_unit" in info:
        return info.get("jfif_unit") in (1, 2) or _exif_resolution(img.getexif())
    dpi = tuple(info.get("dpi", ()))
    if "exif" in info and dpi == (72, 72) and all(type(v) is int for v in dpi):  # a camera JPEG's copy: the filler
        return _exif_resolution(img.getexif())
    return tuple(float(v) for v in dpi) != (1.0, 1.0)


def _exif_resolution(exif: Image.Exif) -> bool:
    """Whether EXIF states a usable resolution: XResolution with a unit of inches or centimetres."""
    try:
        return exif.get(296) in (2, 3) and math.isfinite(float(exif[282])) and float(exif[282]) > 0
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return False


def upright(img: Image.Image) -> Image.Image:
    """A copy of ``img`` turned by its EXIF orientation, keeping its ``format`` (16-bit PNG and PGM are told apart
    by it); an image whose EXIF cannot be read is taken as it is."""
    try:
        out = ImageOps.exif_transpose(img)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - junk EXIF: Pillow raises SyntaxError, struct.error...
        return img
    out.format = img.format
    return out


def _photo_exif(src: Image.Exif) -> Image.Exif:
    """The tags that describe the photo, not how its file was stored: a TIFF's own tags (strips, bit depths, its
    ICC profile...), the orientation and the thumbnail are left out."""
    out = Image.Exif()
    for tag in EXIF_KEPT:
        if tag in src:
            out[tag] = src[tag]
    for ifd in EXIF_IFDS:
        sub = {k: v for k, v in src.get_ifd(ifd).items() if k not in EXIF_DROPPED}
        if sub:
            out[ifd] = sub
    return out


def from_pil(img: Image.Image, source: str = "<image>", meta: dict | None = None) -> Photo:
    """Decode an already opened PIL image of any common mode (grey, 16-bit, LA, P, RGB(A), CMYK...). ``meta`` is
    what the result keeps (``metadata``; by default read from ``img``)."""
    photo = _from_pil(img, source)
    photo.meta = metadata(img) if meta is None else meta
    return photo


ICC_MODES = {"L": "RGB", "RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB"}  # what LittleCMS converts, and into


def to_srgb(img: Image.Image) -> Image.Image:
    """``img`` converted from its embedded ICC profile to sRGB (Pillow's ImageCms, LittleCMS), so lightness is
    read as the file means it: a grey image becomes neutral RGB. Without a profile, with one that does not fit its
    mode, or in other modes (16-bit, palette...), ``img`` is returned as it is, read as sRGB."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ICC_MODES:
        return img
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileDescription(src).strip().startswith("sRGB") and img.mode != "CMYK":
            return img  # already sRGB (phones, cameras): converting would cost time and change nothing
        out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode=ICC_MODES[img.mode])
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - a broken profile, or one for another colour space: read as sRGB
        return img
    out.info = {k: v for k, v in img.info.items() if k != "icc_profile"}
    return out


def _from_pil(img: Image.Image, source: str) -> Photo:
    if img.width == 0 or img.height == 0:
        raise ImageError(f"{source}: empty image ({img.width}x{img.height} pixels)")
    alpha = _key_alpha(img)  # a PNG/TIFF tRNS colour key in a grey or RGB image (palette images: below)
    img = to_srgb(img)
    mode = img.mode
    if mode in ("1", "L"):
        grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        return Photo(grey, alpha, False, source)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        scale = 65535.0 if mode != "I" else _int_scale(img, float(arr.max(initial=0.0)))
        return Photo((np.clip(arr, 0, scale) / scale).astype(np.float32), alpha, False, source)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32))
        top = float(arr.max(initial=0.0))
        scale = 1.0 if top <= 2.0 else 255.0 if top <= 256.0 else 65535.0  # [0, 1] with overshoots, 8- or 16-bit
        return Photo(np.clip(arr / scale, 0, 1).astype(np.float32), None, False, source)
    if mode in ("LA", "La"):
        img = img.convert("LA")
        grey = np.asarray(img.getchannel("L"), dtype=np.float32) / 255.0
        return Photo(grey, _alpha_u8(img.getchannel("A")), False, source)
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
    if mode in ("RGBA", "RGBa", "LA"):
        img = img.convert("RGBA")
        alpha = _alpha_u8(img.getchannel("A"))
        img = img.convert("RGB")
    elif mode != "RGB":  # CMYK, YCbCr, LAB, HSV, RGBX ...
        img = img.convert("RGB")
    rgb = np.asarray(img, dtype=np.float32) / 255.0
    if not _is_colour(rgb):
        return Photo(rgb.mean(axis=-1), alpha, False, source)
    return Photo(rgb, alpha, True, source)


def from_array(arr: np.ndarray, source: str = "<array>") -> Photo:
    """Decode a numpy image: (H, W), (H, W, 1|2|3|4); uint8, uint16 or float in [0, 1]."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)) or 0 in arr.shape:
        raise ImageError(f"{source}: expected an array of shape (H, W) or (H, W, 1|2|3|4), got {arr.shape}")
    if arr.dtype == np.uint8:
        f, alpha_scale = arr.astype(np.float32) / 255.0, 1.0
    elif arr.dtype == np.uint16:
        f, alpha_scale = arr.astype(np.float32) / 65535.0, 257.0
    elif np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]
        top = float(finite.max()) if finite.size else 0.0
        if top > 2.0:  # 0-255 data would come out white when clipped (small overshoots, e.g. from resizing, are fine)
            raise ImageError(f"{source}: float arrays are read as values in [0, 1], and this one reaches {top:g}; "
                             "divide 0-255 data by 255 (or pass uint8)")
        f, alpha_scale = np.clip(np.nan_to_num(arr.astype(np.float32)), 0, 1), 1.0 / 255.0
    else:
        raise ImageError(f"{source}: unsupported array dtype {arr.dtype} (use uint8, uint16 or float)")
    alpha = None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        a = arr[:, :, -1].astype(np.float64) / alpha_scale
        alpha = np.clip(np.round(a), 0, 255).astype(np.uint8)
        f = f[:, :, :-1]
    if f.ndim == 3 and f.shape[2] == 1:
        f = f[:, :, 0]
    if f.ndim == 2:
        return Photo(f, alpha, False, source)
    if not _is_colour(f):
        return Photo(f.mean(axis=-1), alpha, False, source)
    return Photo(f, alpha, True, source)


_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """While an image is opened and decoded (Pillow checks sizes on open, seek and load): let Pillow accept images
    up to ``max_pixels`` when that is above its own bomb limit (about 179 Mpx, 2x ``Image.MAX_IMAGE_PIXELS``), so
    raising --max-pixels works; our own check stays the limit. Compare, raise and restore happen under one lock."""
    with _PILLOW_LIMIT:
        old = Image.MAX_IMAGE_PIXELS
        if max_pixels and old is not None and max_pixels > old:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Photo:
    """Open, validate and decode an image file (first frame; EXIF orientation applied)."""
    path = Path(path)
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot access: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageError(f"{name}: is a folder, not an image")
    if st.st_size == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # our own --max-pixels check below is the limit; Pillow's bomb error still applies beyond 2x its own
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _pillow_limit(max_pixels), Image.open(path) as img:  # Pillow re-checks sizes on seek and load
                w, h = img.size
                if max_pixels and w * h > max_pixels:
                    raise ImageError(f"{name}: {w}x{h} = {w * h:,} pixels is more than the limit of {max_pixels:,} "
                                     f"(possible decompression bomb; raise it with --max-pixels)")
                animated = getattr(img, "is_animated", False) and img.format in ("GIF", "PNG", "WEBP")
                frames = int(getattr(img, "n_frames", 1) or 1) if animated else 1  # not a camera JPEG's preview
                img.seek(0)
                img.load()
                photo = from_pil(upright(img), name, metadata(img))  # meta from the file: a copy has no TIFF tags
                photo.frames = frames
                return photo
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except Image.DecompressionBombError:
        limit = f"; the pixel limit is {max_pixels:,}" if max_pixels else ""
        raise ImageError(f"{name}: too large to decode safely (possible decompression bomb{limit})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (or a format Pillow cannot read)") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode it") from None
    except Exception as exc:  # noqa: BLE001 - decoders of untrusted files raise many types; report, don't crash
        msg = first_line(exc)
        if "truncated" in msg or isinstance(exc, (EOFError, SyntaxError)):
            msg = f"truncated or corrupt image ({msg})"
        raise ImageError(f"{name}: cannot decode: {msg}") from None


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None, meta: dict | None = None) -> Image.Image:
    """uint8 (H, W, 3) RGB plus optional uint8 (H, W) alpha -> a PIL RGB or RGBA image; ``meta`` (a Photo's
    ``dpi`` and ``exif``) goes into its ``info``, which ``encode`` writes."""
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(np.ascontiguousarray(alpha), "L"))
    img.info.update(meta or {})
    return img


def encode(img: Image.Image, fmt: str) -> bytes:
    """Encode for ``fmt`` (png, jpg, webp); alpha is dropped for jpg (flattened onto white)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise AutocolorError(f"unknown output format {fmt!r}; use {', '.join(FORMATS)}")
    if img.mode == "RGBA" and fmt not in ALPHA_FORMATS:
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    limit = MAX_SIDE.get(fmt)
    if limit and max(img.size) > limit:
        raise ImageError(f"{img.width}x{img.height} is too large for {fmt} (at most {limit:,} pixels a side); "
                         "use --format png")
    buf = io.BytesIO()
    opts = {"jpg": {"quality": 95}, "webp": {"lossless": True}, "png": {"optimize": False}}[fmt]
    opts.update({k: img.info[k] for k in (("exif", "dpi") if fmt != "webp" else ("exif",)) if k in img.info})
    if fmt == "jpg":  # JPEG's own limits: a 64 KB EXIF segment and 16-bit DPI; beyond them the photo is still written
        if len(opts.get("exif", b"")) > 65533:
            del opts["exif"]
        if "dpi" in opts and not all(1 <= v <= MAX_DPI for v in opts["dpi"]):
            del opts["dpi"]
    try:
        img.save(buf, FORMATS[fmt], **opts)
    except Exception as exc:  # noqa: BLE001 - an encoder's own limits (ValueError, struct.error...), as one line
        raise ImageError(f"cannot encode as {fmt}: {first_line(exc)}") from None
    return buf.getvalue()


def write_image(img: Image.Image, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write atomically to ``path`` (format from its suffix); refuses to replace a file unless ``overwrite``."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if path.exists() and not overwrite:
        raise ImageError(f"{path}: already exists (use --overwrite to replace it)")
    try:
        data = encode(img, fmt)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path

"""Colorize real photos of any size: chroma predicted at a small working size, lightness kept at full size.

The model sees the photo's CIE L*/100 resized so its long side is ``size`` (sides multiples of the model's
``size_multiple``); its a*, b* are upsampled bilinearly to the full size and joined with the full-resolution
L*, so the result has the input's size and lightness (up to gamut clipping and 8-bit rounding).
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from autocolor.colour import grey_rgb, greyscale, lab_from, saturate, to_uint8
from autocolor.errors import AutocolorError, first_line
from autocolor.files import atomic_write_bytes
from autocolor.fuse import fuse_for_inference, is_fused
from autocolor.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    Photo,
    encode,
    from_array,
    from_pil,
    metadata,
    read_image,
    to_pil,
    upright,
    write_image,
)
from autocolor.nets import MAX_BOOST, decoding_options
from autocolor.runtime import autocast, pick_device, pick_precision
from autocolor.weights import bundled_names, load_model

# Long side of the model's input. Measured with benchmarks/colorize_size.py on the sample photos: PSNR/SSIM/AuC
# peak at 64-128 for the seed model (CIFAR-trained, 32x32) and larger sizes add false blue/green blotches;
# a model card may override it with "colorize_size".
DEFAULT_SIZE = 64
MAX_SIZE = 2048  # the models were trained at 32-128 px; beyond this a working size only costs memory and time
PREFERRED = ("vivid", "seed-lab", "seed")  # stand-ins, best first, when "default" is not bundled
STRIP_PIXELS = 1 << 20  # full-resolution Lab work is done in row strips of about this many pixels

ImageLike = Image.Image | np.ndarray | str | os.PathLike


class BatchError(AutocolorError):
    """Some files of a batch failed (each was reported on its own line); the others were written."""


def resolve_model(spec: str, notice: Callable[[str], None] | None = None) -> str:
    """``default`` falls back to the best bundled model while ``default`` itself is not bundled."""

    names = bundled_names()
    if spec != "default" or "default" in names or any(Path(spec).glob("*.safetensors")) or Path(spec).is_file():
        return spec
    for name in PREFERRED:
        if name in names:
            if notice:
                notice(f"bundled model 'default' is not available; using '{name}'")
            return name
    if names:
        if notice:
            notice(f"bundled model 'default' is not available; using '{names[0]}'")
        return names[0]
    raise AutocolorError("no bundled model is installed; pass --model RUN_DIR or FILE.safetensors "
                         "(train one with `autocolor train`)")


def _device(device: str | torch.device) -> torch.device:
    """``auto`` and CUDA names go through ``pick_device`` (a user error without a GPU); any other device torch
    knows (``cpu:0``, ``mps``) is taken as it is."""
    name = str(device)
    if name == "auto" or name.startswith("cuda"):
        return pick_device(name)
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise AutocolorError(f"unknown device {name!r} ({first_line(exc)})") from None


def _whole(x: object) -> bool:
    """An int-like number (numpy integers, 64.0) but not a bool or 64.5."""
    return not isinstance(x, bool) and (isinstance(x, numbers.Integral) or (isinstance(x, float) and x.is_integer()))


def check_decoding(saturation: float, temperature: float | None, boost: float | None,
                   boost_max: float | None = None) -> None:
    """The CLI's ranges, for the Python API too: finite saturation >= 0, temperature > 0, boost >= 0, boost_max
    from 1 to 5."""
    for name, value, positive in (("saturation", saturation, False), ("temperature", temperature, True),
                                  ("boost", boost, False)):
        if value is None:
            continue
        ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
              and (value > 0 if positive else value >= 0))
        if not ok:
            raise AutocolorError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")
    if boost_max is not None and not (isinstance(boost_max, numbers.Real) and not isinstance(boost_max, bool)
                                      and 1 <= boost_max <= MAX_BOOST):
        raise AutocolorError(f"boost_max must be a number from 1 to {MAX_BOOST:g} (the largest per-image chroma "
                             f"scale), got {boost_max!r}")


def working_shape(height: int, width: int, size: int, multiple: int = 8) -> tuple[int, int]:
    """Resize (H, W) so the long side is ``size``, both sides rounded to multiples of ``multiple`` (at least one)."""
    scale = size / max(height, width)
    return (max(multiple, round(height * scale / multiple) * multiple),
            max(multiple, round(width * scale / multiple) * multiple))


def _lightness(photo: Photo) -> torch.Tensor:
    """CIE L*/100 of the photo at full resolution, float32 (H, W), computed in row strips."""
    h, w = photo.pixels.shape[:2]
    out = torch.empty(h, w, dtype=torch.float32)
    rows = max(1, STRIP_PIXELS // w)
    for r in range(0, h, rows):
        px = torch.from_numpy(np.ascontiguousarray(photo.pixels[r:r + rows]))
        rgb = px.unsqueeze(0).expand(3, -1, -1) if px.ndim == 2 else px.permute(2, 0, 1)
        out[r:r + rows] = greyscale(rgb.unsqueeze(0))[0, 0]
    return out


def photo_lightness(photo: Photo) -> torch.Tensor:
    """CIE L*/100 of a photo as a (1, 1, H, W) tensor (the grey image the model is given)."""
    return _lightness(photo).view(1, 1, *photo.pixels.shape[:2])


def resize_lightness(L: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """L*/100 (H, W) resized bilinearly (Pillow) to (1, 1, height, width), clamped to [0, 1]."""
    small = Image.fromarray(L.numpy(), "F").resize((width, height), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(small, dtype=np.float32).copy()).clamp_(0, 1).view(1, 1, height, width)


def _upsample_rows(ab_w: torch.Tensor, r0: int, r1: int, height: int) -> torch.Tensor:
    """Rows r0:r1 of ``ab_w`` (1, 2, h, W) bilinearly upsampled to ``height`` rows (same as F.interpolate)."""
    h = ab_w.shape[2]
    ys = ((torch.arange(r0, r1, dtype=torch.float64) + 0.5) * (h / height) - 0.5).clamp_(min=0)
    y0 = ys.floor().long().clamp_(max=h - 1)
    y1 = (y0 + 1).clamp_(max=h - 1)
    wy = (ys - y0).float().view(1, 1, -1, 1)
    return ab_w[:, :, y0] * (1 - wy) + ab_w[:, :, y1] * wy


@dataclass
class Colorizer:
    """A loaded model plus the settings used to colour photos. Build one with ``Colorizer.load``.

    A torch ``model`` is used with its BatchNorm folded into the convolutions (``autocolor.fuse``): a folded
    copy is made when it is not folded already, so the model passed in is left as it was.
    """

    model: torch.nn.Module
    card: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    size: int = DEFAULT_SIZE
    saturation: float = 1.0
    temperature: float | None = None
    boost: float | None = None  # per-image colour boost of classification models (None: the card's)
    boost_max: float | None = None  # cap on that boost's per-image chroma scale, 1 to 5 (None: the card's)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    name: str = "model"
    precision: str = "auto"  # bf16 autocast where the hardware runs it natively (runtime.pick_precision)

    def __post_init__(self) -> None:
        if not _whole(self.size) or not 8 <= self.size <= MAX_SIZE:
            raise AutocolorError(f"size (--size) must be a whole number from 8 to {MAX_SIZE}, got {self.size!r}")
        self.size = int(self.size)
        check_decoding(self.saturation, self.temperature, self.boost, self.boost_max)
        if self.max_pixels is not None and not (_whole(self.max_pixels) and self.max_pixels >= 0):
            raise AutocolorError(f"max_pixels (--max-pixels) must be a whole number >= 1 (0 or None: no limit), got "
                                 f"{self.max_pixels!r}")
        if not (isinstance(self.model, torch.nn.Module) or callable(getattr(self.model, "chroma", None))):
            raise TypeError(f"Colorizer needs a model; got {type(self.model).__name__} (load one by name with "
                            "Colorizer.load)")
        copied = isinstance(self.model, torch.nn.Module) and not is_fused(self.model)
        if copied:
            self.model = fuse_for_inference(self.model)
        self.model.eval()
        if self.boost_max is not None:
            self.boost_max = float(self.boost_max)  # in range: check_decoding
        self.device = _device(self.device)
        if isinstance(self.model, torch.nn.Module):
            where = next(self.model.parameters(), torch.empty(0)).device
            if (where.type, where.index or 0) != (self.device.type, self.device.index or 0):
                try:  # the model runs where its inputs go; a model passed in already folded is copied, not moved
                    self.model = (self.model if copied else copy.deepcopy(self.model)).to(self.device)
                except (RuntimeError, AssertionError) as exc:  # e.g. mps on a torch built without it
                    raise AutocolorError(f"cannot use device {str(self.device)!r}: {first_line(exc)}") from None
        self.precision = pick_precision(self.precision, self.device) if isinstance(self.model, torch.nn.Module) \
            else "fp32"

    @classmethod
    def load(cls, spec: str | os.PathLike = "default", device: str = "auto",
             notice: Callable[[str], None] | None = None, **settings) -> Colorizer:
        """Load a bundled name, run folder or .safetensors file; ``settings`` are the dataclass fields.

        Without ``size``, the model card's ``colorize_size`` is used when it has one, else ``DEFAULT_SIZE``.
        """

        dev = pick_device(device)
        spec = resolve_model(str(spec), notice)
        model, card = load_model(spec, dev)  # __post_init__ folds BatchNorm (one copy, made there)
        asked = decoding_options(settings.get("temperature"), settings.get("boost"), settings.get("boost_max"))
        if asked and not getattr(model, "decodes", False) and notice:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in asked)
            notice(f"{spec} is not a classification model (like vivid): {flags} ignored")
        if settings.get("size") is None:
            size = card.get("colorize_size") or DEFAULT_SIZE
            if not _whole(size):
                raise AutocolorError(f"the model card of {spec} has colorize_size {size!r}; it must be a number "
                                     "of pixels")
            settings["size"] = size
        return cls(model=model, card=card, device=dev, name=str(spec), **settings)

    def photo(self, image: ImageLike) -> Photo:
        """Decode any accepted input (PIL image, numpy array or path) into a ``Photo``."""
        if isinstance(image, Photo):
            return image
        if isinstance(image, Image.Image):
            if self.max_pixels and image.width * image.height > self.max_pixels:
                raise ImageError(f"<image>: {image.width}x{image.height} pixels is more than the limit of "
                                 f"{self.max_pixels:,}")
            meta = metadata(image)  # before turning it: the copy has no TIFF tags
            try:
                return from_pil(upright(image), meta=meta)  # upright, as a file of the same photo is read
            except (OSError, ValueError, AssertionError) as exc:  # a closed or truncated image
                raise ImageError(f"<image>: cannot decode: {first_line(exc)}") from None
        if isinstance(image, np.ndarray):
            if self.max_pixels and image.ndim >= 2 and image.shape[0] * image.shape[1] > self.max_pixels:
                raise ImageError(f"<array>: {image.shape[1]}x{image.shape[0]} pixels is more than the limit of "
                                 f"{self.max_pixels:,}")
            return from_array(image)
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, self.max_pixels)
        raise TypeError(f"cannot colorize a {type(image).__name__}; pass a PIL image, numpy array or path")

    @torch.no_grad()
    def colorize(self, image: ImageLike, *, saturation: float | None = None,
                 temperature: float | None = None, boost: float | None = None,
                 boost_max: float | None = None) -> Image.Image:
        """Colorize one image; returns a PIL RGB image (RGBA when the input had alpha) of the input's size."""
        photo = self.photo(image)
        sat = self.saturation if saturation is None else saturation
        temp = self.temperature if temperature is None else temperature
        check_decoding(sat, temp, boost, boost_max)
        L = _lightness(photo)
        height, width = L.shape
        h, w = working_shape(height, width, self.size, self.model.size_multiple)
        x = resize_lightness(L, h, w).to(self.device)
        bst = self.boost if boost is None else boost
        opts = decoding_options(temp, bst, self.boost_max if boost_max is None else boost_max)
        with autocast(self.device, self.precision):
            raw = self.model(x.contiguous(memory_format=torch.channels_last))
        ab = saturate(self.model.chroma(x, raw, **opts).float(), sat).cpu()
        ab_w = F.interpolate(ab, size=(h, width), mode="bilinear", align_corners=False)
        out = np.empty((height, width, 3), dtype=np.uint8)
        rows = max(1, STRIP_PIXELS // width)
        for r in range(0, height, rows):
            r1 = min(height, r + rows)
            rgb = lab_from(L[r:r1].view(1, 1, r1 - r, width), _upsample_rows(ab_w, r, r1, height))
            out[r:r1] = to_uint8(rgb)[0].permute(1, 2, 0).numpy()
        return to_pil(out, photo.alpha, photo.meta)

    def colorize_many(self, images: Iterable[ImageLike], progress: bool = False,
                      **opts: float | None) -> Iterator[Image.Image]:
        """Colorize several images one by one (any sizes), yielding PIL images in order."""
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            raise TypeError("colorize_many takes a list of images or paths; for one image use colorize")
        bar = _bar(len(images) if isinstance(images, Sized) else None, progress)  # a generator is read as it goes
        try:
            for item in images:
                yield self.colorize(item, **opts)
                bar.update(1)
        finally:
            bar.close()

    def colorize_files(self, inputs: list[Path], outputs: list[Path], overwrite: bool = False,
                       progress: bool = True, report: Callable[[str], None] | None = None,
                       notice: Callable[[str], None] | None = None,
                       written_cb: Callable[[Path], None] | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
        """Colorize ``inputs`` into ``outputs``; a failing file is reported and skipped. No input is ever
        replaced, ``overwrite`` or not. ``written_cb`` hears of each output as soon as it is written.

        Returns (written outputs, [(failed input, one-line message)]).
        """

        written: list[Path] = []
        errors: list[tuple[Path, str]] = []
        protected = {p.resolve() for p in inputs}
        bar = _bar(len(inputs), progress)
        try:
            for src, dst in zip(inputs, outputs, strict=True):
                try:
                    if dst.resolve() in protected:
                        raise ImageError(f"{src}: output {dst} would replace an input; choose another -o")
                    if dst.exists() and not overwrite:
                        raise ImageError(f"{src}: output {dst} already exists (use --overwrite to replace it)")
                    photo = read_image(src, self.max_pixels)
                    if photo.colour and notice:
                        notice(f"{src} is in colour; colorizing its greyscale version")
                    if photo.frames > 1 and notice:
                        notice(f"{src} is animated ({photo.frames} frames); colorizing its first frame")
                    if photo.alpha is not None and dst.suffix.lower() not in (".png", ".webp") and notice:
                        notice(f"{src} has transparency, which {dst.suffix} cannot hold; flattened onto white")
                    written.append(write_image(self.colorize(photo), dst, overwrite=overwrite))
                    if written_cb:
                        written_cb(written[-1])
                except (ImageError, RuntimeError, MemoryError) as exc:  # RuntimeError: e.g. CUDA out of memory
                    msg = str(exc) if isinstance(exc, ImageError) else \
                        f"{src}: cannot colorize: {first_line(exc)}"
                    errors.append((src, msg))
                    if report:
                        report(msg)
                bar.update(1)
        finally:
            bar.close()
        return written, errors


def _bar(total: int | None, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="image", disable=not enabled or (total is not None and total < 2),
                dynamic_ncols=True, leave=False)


def sample_paths() -> list[Path]:
    """The sample photos shipped in ``autocolor/samples`` (see SOURCES.md there for their licences)."""
    folder = Path(__file__).with_name("samples")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def make_sheet(output: str | os.PathLike = "demo.png", model: str = "default", device: str = "auto",
               notice: Callable[[str], None] | None = None, colorizer: Colorizer | None = None,
               height: int = 192) -> Path:
    """Colorize the sample photos and write one PNG sheet, a row per photo: grey | colorized | original."""

    col = colorizer or Colorizer.load(model, device=device, notice=notice)
    rows = []
    for path in sample_paths():
        with Image.open(path) as im:
            original = im.convert("RGB")
        photo = read_image(path)
        grey = Image.fromarray(to_uint8(grey_rgb(photo_lightness(photo)))[0].permute(1, 2, 0).numpy(), "RGB")
        tiles = [grey, col.colorize(photo), original]
        w = round(original.width * height / original.height)
        rows.append([t.convert("RGB").resize((w, height), Image.Resampling.LANCZOS) for t in tiles])
    gap = 4
    width = max(sum(t.width for t in r) + gap * 4 for r in rows)
    sheet = Image.new("RGB", (width, len(rows) * (height + gap) + gap), (255, 255, 255))
    for i, r in enumerate(rows):
        x = gap
        for t in r:
            sheet.paste(t, (x, gap + i * (height + gap)))
            x += t.width + gap
    out = Path(output)
    atomic_write_bytes(out, encode(sheet, "png"))
    return out

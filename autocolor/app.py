"""The web app (Gradio): upload a photo, pick a model and saturation, see grey | colorized, download the result.

``build_app`` returns the ``gr.Blocks`` (tests launch it on a free port); ``launch`` serves it. Uploads are
read by ``autocolor.imageio`` (size, pixel and format checks); a bad upload shows an error in the page.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # works offline; no calls home

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from autocolor.errors import AutocolorError  # noqa: E402
from autocolor.imageio import DEFAULT_MAX_PIXELS, write_image  # noqa: E402

DEFAULT_UPLOAD_MB = 20.0
KEEP_S = 3600  # results stay downloadable this long; older ones (ours and Gradio's cache) are deleted
DEFAULT_KEEP_MB = 2000.0  # and the results folder holds at most this much: the oldest results go first
PREVIEW_SIDE = 2048  # the page shows images at most this long a side; the download is full size


def _error(message: str) -> gr.Error:
    """An error shown in the page (no traceback in the server log: it is the user's file, not a bug)."""
    return gr.Error(message, print_exception=False)


def prune(folder: Path, max_age_s: float, max_bytes: float | None = None) -> int:
    """Delete the entries of ``folder`` last changed more than ``max_age_s`` seconds ago, then, oldest first, as many
    more as it takes to bring the folder within ``max_bytes``; returns how many entries were deleted."""
    cutoff, removed, kept = time.time() - max_age_s, 0, []
    for entry in folder.iterdir():
        try:
            changed = entry.stat().st_mtime
            if changed < cutoff:
                _remove(entry)
                removed += 1
            else:
                kept.append((changed, _bytes(entry), entry))
        except OSError:  # gone already, or in use by a parallel request: the next prune tries again
            pass
    total = sum(size for _, size, _ in kept)
    for _, size, entry in sorted(kept, key=lambda k: k[0]):
        if max_bytes is None or total <= max_bytes:
            break
        try:
            _remove(entry)
            removed, total = removed + 1, total - size
        except OSError:
            pass
    return removed


def _remove(entry: Path) -> None:
    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _bytes(entry: Path) -> int:
    """Bytes in a file, or in the files of a result's folder."""
    if not entry.is_dir():
        return entry.lstat().st_size
    return sum(f.lstat().st_size for f in entry.rglob("*") if not f.is_dir())


def _shown_size(width: int, height: int) -> tuple[int, int]:
    """The size the page shows an image at: long side at most PREVIEW_SIDE (the download keeps full size)."""
    scale = min(1.0, PREVIEW_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _grey_preview(photo) -> Image.Image:
    """The model's grey input as shown on the page, at the shown size (a 64 MP photo's float RGB would take GBs)."""
    from autocolor.colorize import photo_lightness, resize_lightness
    from autocolor.colour import grey_rgb, to_uint8

    L = photo_lightness(photo)[0, 0]  # float32 (H, W), computed in row strips
    w, h = _shown_size(L.shape[1], L.shape[0])
    return Image.fromarray(to_uint8(grey_rgb(resize_lightness(L, h, w)))[0].permute(1, 2, 0).numpy(), "RGB")


def _out_of_memory(exc: BaseException) -> bool:
    """Torch on the CPU reports a failed allocation as a RuntimeError, not a MemoryError."""
    return isinstance(exc, MemoryError) or "allocate" in str(exc) or type(exc).__name__ == "OutOfMemoryError"


class _Models:
    """Loads each offered model once, on first use (thread-safe)."""

    def __init__(self, specs: list[str], device: str, max_pixels: int) -> None:
        self.specs, self.device, self.max_pixels = specs, device, max_pixels
        self._cache: dict = {}
        self._lock = threading.Lock()

    def get(self, spec: str):
        from autocolor.colorize import Colorizer

        if spec not in self.specs:
            raise _error(f"unknown model {spec!r}")
        with self._lock:
            if spec not in self._cache:
                self._cache[spec] = Colorizer.load(spec, device=self.device, max_pixels=self.max_pixels)
            return self._cache[spec]


def default_models() -> list[str]:
    """The bundled model names, the default one first (falls back like the CLI while it is missing)."""
    from autocolor.colorize import resolve_model
    from autocolor.weights import bundled_names

    names = bundled_names()
    if not names:
        raise AutocolorError("no bundled model is installed; pass --model RUN_DIR or FILE.safetensors")
    first = resolve_model("default")
    return [first, *[n for n in names if n != first]]


def _check(specs: list[str], device: str) -> None:
    """Fail at start-up, in one line, on a model or device the app could never use (not on the first upload)."""
    from autocolor.colorize import resolve_model
    from autocolor.runtime import pick_device
    from autocolor.weights import load_card, resolve

    pick_device(device)
    for spec in specs:
        load_card(resolve(resolve_model(spec)))


def build_app(models: list[str] | None = None, max_upload_mb: float = DEFAULT_UPLOAD_MB,
              max_pixels: int = DEFAULT_MAX_PIXELS, device: str = "auto",
              keep_mb: float = DEFAULT_KEEP_MB) -> gr.Blocks:
    """The Gradio Blocks app offering ``models`` (bundled names, run folders or weights files). Results are kept
    for an hour, and within ``keep_mb`` megabytes (the oldest are deleted first)."""
    specs = [str(m) for m in (models or default_models())]
    _check(specs, device)
    cache = _Models(specs, device, max_pixels)
    outdir = Path(tempfile.mkdtemp(prefix="autocolor-app-"))
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)

    def run(upload: str | None, spec: str, saturation: float):
        if not upload:
            raise _error("upload a photo first")
        path = Path(upload)
        name = path.name
        try:
            nbytes = path.stat().st_size
        except OSError:
            raise _error(f"{name}: the upload could not be read") from None
        if nbytes > max_upload_mb * 1e6:
            raise _error(f"{name}: {nbytes / 1e6:.1f} MB is more than the {max_upload_mb:g} MB upload limit")
        try:
            col = cache.get(spec)
            photo = col.photo(path)
            result = col.colorize(photo, saturation=float(saturation))
            grey = _grey_preview(photo)
        except AutocolorError as exc:  # the CLI's flag hints mean nothing on the page
            raise _error(str(exc).replace(str(path), name).replace("; raise it with --max-pixels", "")) from None
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            raise _error(f"{name}: not enough memory for this image") from None
        stem = (path.stem or "photo")[:100]  # Gradio shortens long cached names, which would drop "-colorized"
        try:
            outdir.mkdir(parents=True, exist_ok=True)  # a /tmp cleaner may have removed it
            prune(outdir, KEEP_S, keep_mb * 1e6)
            out = write_image(result, Path(tempfile.mkdtemp(dir=outdir)) / f"{stem}-colorized.png")
        except (OSError, AutocolorError) as exc:
            raise _error(f"{name}: the result could not be saved on the server ({exc})") from None
        size = _shown_size(*result.size)
        return grey, result if result.size == size else result.resize(size, Image.Resampling.LANCZOS), str(out)

    with gr.Blocks(title="autocolor", delete_cache=(KEEP_S, KEEP_S)) as app:
        gr.Markdown("# autocolor\nColorize a greyscale photo (colour photos are converted to grey first). "
                    f"Limits: {max_upload_mb:g} MB, {max_pixels / 1e6:g} megapixels.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="upload")
                model = gr.Dropdown(specs, value=specs[0], label="Model", elem_id="model")
                saturation = gr.Slider(0.0, 3.0, value=1.0, step=0.05, label="Saturation", elem_id="saturation")
                button = gr.Button("Colorize", variant="primary", elem_id="colorize")
            with gr.Column():
                with gr.Row():
                    grey = gr.Image(label="Grey input", type="pil", format="png", interactive=False,
                                    elem_id="grey")
                    colour = gr.Image(label="Colorized", type="pil", format="png", interactive=False,
                                      elem_id="result")
                download = gr.File(label="Download (PNG)", interactive=False, elem_id="download")
        button.click(run, [upload, model, saturation], [grey, colour, download], api_name="colorize")
        upload.change(lambda _: (None, None, None), upload, [grey, colour, download], api_name=False)  # no stale result
    app.max_upload_mb = max_upload_mb
    return app


def read_auth_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``user:password`` pairs, one per line (blank lines and ``#`` comments skipped), for ``serve --auth-file``."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AutocolorError(f"--auth-file {path}: cannot read it ({exc})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise AutocolorError(f"--auth-file {path}: line {number} is not user:password")
        pairs.append((user, password))
    if not pairs:
        raise AutocolorError(f"--auth-file {path}: no user:password lines")
    return pairs


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: float = DEFAULT_UPLOAD_MB,
           block: bool = True, auth: list[tuple[str, str]] | None = None) -> gr.Blocks:
    """Serve ``app`` (``block=False`` returns at once, for tests; close with ``app.close()``); with ``auth``, the
    page asks for one of those user names and passwords."""
    app.queue(default_concurrency_limit=1, max_size=32)
    if block:  # SIGTERM (systemd, docker stop) closes like Ctrl-C, so the temp folders are removed
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block,
                   max_file_size=int(max_upload_mb * 1e6), show_error=True, ssr_mode=False, auth=auth or None)
    except OSError as exc:
        if "port" not in str(exc):
            raise
        raise AutocolorError(f"cannot serve on {host}:{port} (in use, or not allowed): pass another --port") from None
    return app


__all__ = ["build_app", "launch", "default_models", "read_auth_file"]

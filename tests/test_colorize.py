"""Colorizing photos of any size and kind: the Python API, the `colorize` and `demo` commands.

Luminance invariant used here: CIE L* of the output (``colour.greyscale``) against L* of the input, in units
of L*·255/100 (one 8-bit grey level); the mean absolute difference must be at most 1.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image

from autocolor.cli import main
from autocolor.colorize import Colorizer, make_sheet, resolve_model, working_shape
from autocolor.colour import greyscale
from autocolor.errors import AutocolorError
from autocolor.models import build
from autocolor.weights import save_model

H, W = 40, 56


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    """An untrained but deterministic seed-lab model saved as .safetensors (no bundled weights needed)."""
    torch.manual_seed(0)
    model = build("seed-lab").eval()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_model(model, path, {"note": "test model"})


@pytest.fixture(scope="module")
def col(model_path: Path) -> Colorizer:
    return Colorizer.load(model_path, device="cpu")


def ramp(h: int = H, w: int = W, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(0)
    top = 255 if dtype == np.uint8 else 65535
    base = np.linspace(0.15, 0.85, w)[None, :] * np.ones((h, 1)) + rng.uniform(-0.05, 0.05, (h, w))
    return np.clip(base * top, 0, top).astype(dtype)


def lightness(rgb_or_grey: np.ndarray) -> np.ndarray:
    """L* (0..100) of an 8-bit grey (H, W) or RGB (H, W, 3) array."""
    arr = rgb_or_grey if rgb_or_grey.ndim == 3 else np.repeat(rgb_or_grey[..., None], 3, -1)
    t = torch.from_numpy(np.array(arr[..., :3])).permute(2, 0, 1)[None].float() / 255.0
    return greyscale(t)[0, 0].numpy() * 100.0


def assert_same_lightness(out: np.ndarray, grey: np.ndarray) -> None:
    diff = np.abs(lightness(out) - lightness(grey)) * 255.0 / 100.0
    assert diff.mean() <= 1.0, f"mean |dL*| = {diff.mean():.3f} grey levels"


def is_coloured(rgb: np.ndarray) -> bool:
    rgb = rgb.astype(int)
    return np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 3 or np.abs(rgb[..., 0] - rgb[..., 1]).mean() > 3


# ---- Python API ----------------------------------------------------------------------------------------------


def test_api_numpy_pil_and_path_agree(col: Colorizer, tmp_path: Path) -> None:
    g = ramp()
    path = tmp_path / "g.png"
    Image.fromarray(g, "L").save(path)
    a = np.asarray(col.colorize(g))
    b = np.asarray(col.colorize(Image.fromarray(g, "L")))
    c = np.asarray(col.colorize(str(path)))
    assert a.shape == (H, W, 3) and is_coloured(a)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert_same_lightness(a, g)


def test_lazy_export() -> None:
    import autocolor

    assert autocolor.Colorizer is Colorizer
    with pytest.raises(AttributeError):
        autocolor.nope  # noqa: B018


@pytest.mark.parametrize("h, w", [(40, 56), (17, 5), (1, 1), (300, 123), (61, 640)])
def test_any_size_kept(col: Colorizer, h: int, w: int) -> None:
    g = ramp(h, w)
    out = col.colorize(g)
    assert out.size == (w, h) and out.mode == "RGB"
    assert_same_lightness(np.asarray(out), g)


@pytest.mark.parametrize("size", [8, 32, 64, 128])
def test_working_size_option(model_path: Path, size: int) -> None:
    c = Colorizer.load(model_path, device="cpu", size=size)
    out = np.asarray(c.colorize(ramp()))
    assert out.shape == (H, W, 3)
    assert_same_lightness(out, ramp())


def test_card_colorize_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = save_model(build("seed-lab").eval(), tmp_path / "m.safetensors", {"colorize_size": 96})
    assert Colorizer.load(path, device="cpu").size == 96
    assert Colorizer.load(path, device="cpu", size=32).size == 32


def test_colorize_size_write_choice(tmp_path: Path) -> None:
    """benchmarks/colorize_size.py --write: the best size by PSNR lands in the card, and colorize then uses it."""
    bench = load_script("benchmarks/colorize_size.py")
    torch.manual_seed(0)
    path = save_model(build("seed-lab").eval(), tmp_path / "m.safetensors", {"colorize_size": 64, "name": "m"})
    assert bench.write_choice(str(path), {32: 20.0, 48: 21.25, 96: 19.5}) == 48
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["colorize_size_selection"]["psnr_by_size"] == {"32": 20.0, "48": 21.25, "96": 19.5}
    assert card["name"] == "m" and Colorizer.load(path, device="cpu").size == 48


def test_working_shape_multiple_of_8() -> None:
    assert working_shape(300, 451, 64) == (40, 64)
    assert working_shape(5, 4000, 64) == (8, 64)
    for h, w in [(1, 1), (999, 13), (480, 640)]:
        sh = working_shape(h, w, 100)
        assert all(s % 8 == 0 and s >= 8 for s in sh)


def test_model_size_multiple_is_used(tmp_path: Path) -> None:
    """A model whose input sides must be multiples of 16 (unet with a 2x2 stem) still colorizes any size."""
    torch.manual_seed(0)
    model = build("unet", stem=2).eval()
    assert model.size_multiple == 16
    c = Colorizer.load(save_model(model, tmp_path / "s.safetensors", {}), device="cpu", size=40)
    for h, w in [(37, 50), (9, 300)]:
        out = np.asarray(c.colorize(ramp(h, w)))
        assert out.shape == (h, w, 3)
        assert_same_lightness(out, ramp(h, w))


def test_saturation_zero_is_grey(col: Colorizer) -> None:
    out = np.asarray(col.colorize(ramp(), saturation=0.0)).astype(int)
    assert np.abs(out[..., 0] - out[..., 2]).max() <= 1
    stronger = np.asarray(col.colorize(ramp(), saturation=2.0)).astype(int)
    normal = np.asarray(col.colorize(ramp())).astype(int)
    assert np.abs(stronger[..., 0] - stronger[..., 2]).mean() > np.abs(normal[..., 0] - normal[..., 2]).mean()


def test_16bit_input(col: Colorizer) -> None:
    g16 = ramp(dtype=np.uint16)
    out = np.asarray(col.colorize(g16))
    assert out.shape == (H, W, 3)
    assert_same_lightness(out, np.round(g16 / 257.0).astype(np.uint8))


def test_alpha_kept(col: Colorizer) -> None:
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    out = col.colorize(np.dstack([ramp(), alpha]))
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], alpha)


def test_colour_input_uses_its_lightness(col: Colorizer) -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(30, 220, (H, W, 3), dtype=np.uint8)
    out = np.asarray(col.colorize(rgb))
    diff = np.abs(lightness(out) - lightness(rgb)) * 2.55
    assert diff.mean() <= 1.0


def test_colorize_many(col: Colorizer) -> None:
    outs = list(col.colorize_many([ramp(), ramp(20, 30), Image.fromarray(ramp(), "L")]))
    assert [o.size for o in outs] == [(W, H), (30, 20), (W, H)]


def test_pixel_limit_for_arrays(model_path: Path) -> None:
    c = Colorizer.load(model_path, device="cpu", max_pixels=100)
    with pytest.raises(AutocolorError, match="limit"):
        c.colorize(ramp())


def test_default_model_fallback(monkeypatch) -> None:
    import autocolor.colorize as weights  # where resolve_model looks the bundled names up

    notes: list[str] = []
    monkeypatch.setattr(weights, "bundled_names", lambda: ["seed", "seed-lab"])
    assert resolve_model("default", notes.append) == "seed-lab" and "using 'seed-lab'" in notes[0]
    monkeypatch.setattr(weights, "bundled_names", lambda: ["default", "seed"])
    assert resolve_model("default") == "default"
    monkeypatch.setattr(weights, "bundled_names", lambda: [])
    with pytest.raises(AutocolorError, match="no bundled model"):
        resolve_model("default")
    assert resolve_model("/some/run") == "/some/run"


# ---- the `colorize` command ----------------------------------------------------------------------------------


def save_all_kinds(folder: Path) -> dict[str, Path]:
    """One small file of every supported kind; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    g = ramp()
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    p = {}
    p["grey8"] = folder / "grey8.png"
    Image.fromarray(g, "L").save(p["grey8"])
    p["grey16"] = folder / "grey16.png"
    Image.fromarray(ramp(dtype=np.uint16)).save(p["grey16"])
    p["grey32"] = folder / "grey32.tif"
    Image.fromarray(ramp(dtype=np.uint16).astype(np.int32)).save(p["grey32"])
    p["la"] = folder / "la.png"
    Image.merge("LA", [Image.fromarray(g, "L"), Image.fromarray(alpha, "L")]).save(p["la"])
    p["palette"] = folder / "palette.png"
    Image.fromarray(g, "L").convert("P").save(p["palette"], transparency=0)
    p["greyrgb"] = folder / "greyrgb.jpg"
    Image.fromarray(g, "L").convert("RGB").save(p["greyrgb"], quality=95)
    p["colour"] = folder / "colour.webp"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p["colour"],
                                                                                             lossless=True)
    p["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(g, "L").convert("RGB").convert("CMYK").save(p["cmyk"], quality=95)
    p["bmp"] = folder / "b.bmp"
    Image.fromarray(g, "L").save(p["bmp"])
    p["gif"] = folder / "anim.gif"
    Image.fromarray(g, "L").convert("P").save(p["gif"], save_all=True,
                                              append_images=[Image.new("P", (W, H), 3)], duration=50)
    p["rotated"] = folder / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(g, "L").save(p["rotated"], exif=exif, quality=95)
    return p


def test_cli_every_kind(model_path: Path, tmp_path: Path, capsys) -> None:
    paths = save_all_kinds(tmp_path / "in")
    before = {k: v.read_bytes() for k, v in paths.items()}
    rc = main(["colorize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model_path)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "colour.webp is in colour" in cap.err  # notice for colour input
    for name, src in paths.items():
        assert src.read_bytes() == before[name]  # inputs untouched
        out = tmp_path / "out" / f"{src.stem}.png"
        assert str(out) in cap.out
        with Image.open(out) as img:
            expected = (H, W) if name == "rotated" else (W, H)  # EXIF orientation applied: upright output
            assert img.size == expected, name
            assert img.mode == ("RGBA" if name in ("la", "palette") else "RGB"), name
            arr = np.asarray(img)
            assert is_coloured(arr[..., :3]), name
    with Image.open(tmp_path / "out" / "la.png") as img:
        np.testing.assert_array_equal(np.asarray(img)[..., 3], np.tile(np.linspace(0, 255, W).astype(np.uint8),
                                                                       (H, 1)))
    with Image.open(tmp_path / "out" / "grey8.png") as img:
        assert_same_lightness(np.asarray(img), ramp())
    with Image.open(tmp_path / "out" / "grey16.png") as img:
        assert_same_lightness(np.asarray(img), np.round(ramp(dtype=np.uint16) / 257.0).astype(np.uint8))


@pytest.mark.parametrize("fmt, mode", [("jpg", "RGB"), ("webp", "RGBA"), ("png", "RGBA")])
def test_cli_formats(model_path: Path, tmp_path: Path, fmt: str, mode: str, capsys) -> None:
    src = tmp_path / "la.png"
    alpha = np.full((H, W), 200, np.uint8)
    Image.merge("LA", [Image.fromarray(ramp(), "L"), Image.fromarray(alpha, "L")]).save(src)
    rc = main(["colorize", str(src), "-o", str(tmp_path / "o"), "--model", str(model_path), "--format", fmt])
    assert rc == 0
    with Image.open(tmp_path / "o" / f"la.{fmt}") as img:
        assert img.format == {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}[fmt]
        assert img.mode == mode and img.size == (W, H)
    if fmt == "jpg":
        assert "transparency" in capsys.readouterr().err


def test_cli_same_stem_distinct_outputs(model_path: Path, tmp_path: Path, capsys) -> None:
    for sub, v in (("a", 60), ("b", 180)):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.full((H, W), v, np.uint8), "L").save(tmp_path / sub / "photo.png")
    Image.fromarray(ramp(), "L").save(tmp_path / "photo.jpg")
    rc = main(["colorize", str(tmp_path / "a" / "photo.png"), str(tmp_path / "b"), str(tmp_path / "photo.jpg"),
               "-o", str(tmp_path / "out"), "--model", str(model_path)])
    assert rc == 0
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["photo-1.png", "photo-2.png", "photo.png"]
    means = [lightness(np.asarray(Image.open(tmp_path / "out" / n).convert("RGB"))).mean() for n in outs]
    assert len({round(m) for m in means}) == 3  # three different pictures, none lost


def test_cli_glob(model_path: Path, tmp_path: Path) -> None:
    for i in range(2):
        Image.fromarray(ramp(), "L").save(tmp_path / f"g{i}.png")
    rc = main(["colorize", str(tmp_path / "g*.png"), "-o", str(tmp_path / "out"), "--model", str(model_path)])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["g0.png", "g1.png"]


def test_cli_no_silent_overwrite(model_path: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "p.png"
    Image.fromarray(ramp(), "L").save(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.png").write_bytes(b"precious")
    rc = main(["colorize", str(src), "-o", str(out), "--model", str(model_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "p.png").read_bytes() == b"precious"
    rc = main(["colorize", str(src), "-o", str(out), "--model", str(model_path), "--overwrite"])
    assert rc == 0 and Image.open(out / "p.png").size == (W, H)


def test_cli_never_overwrites_an_input(model_path: Path, tmp_path: Path, capsys) -> None:
    """Colorized into their own folder, even with --overwrite, inputs keep their bytes: outputs take free names."""
    src, other = tmp_path / "p.png", tmp_path / "p.jpg"
    Image.fromarray(ramp(), "L").save(src)
    Image.fromarray(ramp(), "L").save(other)
    before = {p: p.read_bytes() for p in (src, other)}
    rc = main(["colorize", str(other), str(src), "-o", str(tmp_path), "--model", str(model_path), "--overwrite"])
    out = capsys.readouterr().out.split()
    assert rc == 0 and out == [str(tmp_path / "p-1.png"), str(tmp_path / "p-2.png")]
    assert {p: p.read_bytes() for p in (src, other)} == before
    written, errors = Colorizer.load(model_path).colorize_files(  # the guard behind the planned names
        [other, src], [src, tmp_path / "q.png"], overwrite=True, progress=False)
    assert written == [tmp_path / "q.png"] and [e[0] for e in errors] == [other]
    assert "would replace an input" in errors[0][1] and src.read_bytes() == before[src]


def test_cli_batch_with_failures(model_path: Path, tmp_path: Path, capsys) -> None:
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(ramp(), "L").save(d / "good1.png")
    Image.fromarray(ramp(), "L").save(d / "good2.jpg")
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    buf = io.BytesIO()
    Image.fromarray(ramp(), "L").save(buf, "PNG")
    (d / "trunc.png").write_bytes(buf.getvalue()[:200])
    Image.new("L", (500, 500)).save(d / "bomb.png")
    rc = main(["colorize", str(d), str(tmp_path / "missing.png"), "-o", str(tmp_path / "out"),
               "--model", str(model_path), "--max-pixels", "100000"])
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good1.png", "good2.png"]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    per_file = [ln for ln in lines if ln.startswith("autocolor: error: ") and "input(s) failed" not in ln]
    assert len(per_file) == 5
    for name, why in [("empty.png", "empty"), ("text.png", "not an image"), ("trunc.png", "truncated"),
                      ("bomb.png", "decompression bomb"), ("missing.png", "no such file")]:
        assert any(name in ln and why in ln for ln in per_file), (name, per_file)
    summary = lines[-1]
    assert "5 of 7 input(s) failed (2 written)" in summary
    for name in ("empty.png", "text.png", "trunc.png", "bomb.png", "missing.png"):
        assert name in summary


def test_cli_user_errors(model_path: Path, tmp_path: Path, capsys) -> None:
    assert main(["colorize", str(tmp_path / "nothing*.png"), "-o", str(tmp_path / "o"),
                 "--model", str(model_path)]) == 1
    assert "no input images" in capsys.readouterr().err
    assert main(["colorize", "x.png", "-o", str(tmp_path), "--model", str(tmp_path / "none.safetensors")]) == 1
    assert main(["colorize", "x.png", "-o", str(tmp_path), "--size", "4"]) == 2
    assert "Traceback" not in capsys.readouterr().err


# ---- demo ----------------------------------------------------------------------------------------------------


def test_demo_sheet(model_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sheet.png"
    rc = main(["demo", "-o", str(out), "--model", str(model_path), "--device", "cpu"])
    assert rc == 0 and capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.height >= 4 * 192 and img.width > 3 * 192


def test_demo_api_default_name(col: Colorizer, tmp_path: Path, monkeypatch) -> None:
    import autocolor.colorize as colorize_mod

    samples = colorize_mod.sample_paths()
    assert len(samples) == 4 and (samples[0].parent / "SOURCES.md").is_file()
    monkeypatch.setattr(colorize_mod, "sample_paths", lambda: samples[:1])
    monkeypatch.chdir(tmp_path)
    path = make_sheet(colorizer=col, height=32)
    assert path == Path("demo.png")
    with Image.open(tmp_path / "demo.png") as img:
        assert img.height == 32 + 2 * 4


def test_help_states_the_real_defaults(capsys) -> None:
    from autocolor.colorize import DEFAULT_SIZE
    from autocolor.imageio import DEFAULT_MAX_PIXELS

    assert main(["colorize", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"colorize_size, else {DEFAULT_SIZE}]" in out and f"[default: {DEFAULT_MAX_PIXELS}]" in out


def test_temperature_reaches_chroma(col: Colorizer, monkeypatch) -> None:
    seen: list[dict] = []
    real = col.model.chroma

    def spy(L, raw, **opts):
        seen.append(opts)
        return real(L, raw, **opts)

    monkeypatch.setattr(col.model, "chroma", spy)
    col.colorize(ramp())
    col.colorize(ramp(), temperature=0.2)
    col.colorize(ramp(), boost=0.01)
    col.boost = 0.03
    col.colorize(ramp())
    col.colorize(ramp(), boost_max=2.0)
    col.boost_max = 3.0
    col.colorize(ramp())
    assert seen == [{}, {"temperature": 0.2}, {"boost": 0.01}, {"boost": 0.03}, {"boost": 0.03, "boost_max": 2.0},
                    {"boost": 0.03, "boost_max": 3.0}]


def test_boost_max_out_of_range_is_refused(model_path: Path) -> None:
    assert Colorizer.load(model_path, device="cpu", boost_max=2.5).boost_max == 2.5
    with pytest.raises(AutocolorError, match="boost_max must be a number from 1 to 5"):
        Colorizer.load(model_path, device="cpu", boost_max=0.5)


def test_cli_boost_and_temperature_reach_a_vivid_model(tmp_path: Path, monkeypatch, capsys) -> None:
    from autocolor.unet import VividUNet

    torch.manual_seed(0)
    weights = save_model(build("unet-vivid", widths=(8, 16)), tmp_path / "v.safetensors", {"name": "v"})
    seen: list[dict] = []
    real = VividUNet.chroma

    def spy(self, L, raw, **opts):
        seen.append(opts)
        return real(self, L, raw, **opts)

    monkeypatch.setattr(VividUNet, "chroma", spy)
    Image.fromarray(np.full((16, 16), 120, np.uint8), "L").save(tmp_path / "g.png")
    args = ["colorize", str(tmp_path / "g.png"), "--model", str(weights), "-o", str(tmp_path / "out")]
    assert main(args + ["--boost", "0.02", "--temperature", "0.5"]) == 0
    assert seen[-1] == {"temperature": 0.5, "boost": 0.02}
    assert main(args + ["--boost", "0.02", "--boost-max", "2.5", "--overwrite"]) == 0
    assert seen[-1] == {"boost": 0.02, "boost_max": 2.5}
    capsys.readouterr()
    assert main(args + ["--boost-max", "6", "--overwrite"]) == 2  # click's usage error: outside 1..MAX_BOOST
    assert "--boost-max" in capsys.readouterr().err
    onnx_args = ["colorize", str(tmp_path / "g.png"), "--model", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o")]
    capsys.readouterr()
    assert main(onnx_args + ["--backend", "onnx", "--boost", "0.02"]) == 1  # fixed in an exported graph
    assert "no --temperature, --boost or --boost-max" in capsys.readouterr().err
    assert main(onnx_args + ["--backend", "onnx", "--boost-max", "2"]) == 1
    assert "no --temperature, --boost or --boost-max" in capsys.readouterr().err


def test_model_failure_is_a_per_file_error(model_path: Path, tmp_path: Path) -> None:
    c = Colorizer.load(model_path, device="cpu")

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)\nmore detail")

    c.model.forward = boom
    src = tmp_path / "a.png"
    Image.fromarray(ramp(), "L").save(src)
    written, errors = c.colorize_files([src], [tmp_path / "out" / "a.png"], progress=False)
    assert written == [] and errors == [(src, f"{src}: cannot colorize: CUDA out of memory (simulated)")]


def test_cli_boost_max_range_is_the_models() -> None:
    import click

    from autocolor.cli import colorize, evaluate
    from autocolor.nets import MAX_BOOST

    for command in (colorize, evaluate):
        option = next(p for p in command.params if p.name == "boost_max")
        assert isinstance(option.type, click.FloatRange)
        assert (option.type.min, option.type.max) == (1, MAX_BOOST)


def test_api_refuses_what_the_cli_refuses(model_path: Path, col: Colorizer) -> None:
    """Decoding values out of the CLI's ranges (NaN would give a black image), sizes past MAX_SIZE, a bare path
    given to colorize_many, and an empty PIL image are clear errors, not silent wrong output."""
    img = ramp()
    for kwargs in ({"saturation": float("nan")}, {"saturation": -1.0}, {"temperature": 0.0},
                   {"temperature": float("inf")}, {"boost": -5.0}):
        with pytest.raises(AutocolorError, match="must be a finite number"):
            col.colorize(img, **kwargs)
        with pytest.raises(AutocolorError, match="must be a finite number"):
            Colorizer.load(model_path, device="cpu", **kwargs)
    assert np.asarray(col.colorize(img, saturation=np.float32(0.5))).shape == (H, W, 3)
    with pytest.raises(AutocolorError, match="from 8 to 2048"):
        Colorizer.load(model_path, size=100_000)
    with pytest.raises(AutocolorError, match="whole number"):
        Colorizer.load(model_path, size=64.5)
    assert Colorizer.load(model_path, size=np.int64(48)).size == 48 == Colorizer.load(model_path, size=48.0).size
    with pytest.raises(TypeError, match="takes a list"):
        list(col.colorize_many("a.jpg"))
    with pytest.raises(AutocolorError, match="empty image"):
        col.colorize(Image.new("L", (0, 0)))


def test_pil_input_is_turned_upright_like_a_file(col: Colorizer, tmp_path: Path) -> None:
    img = Image.fromarray(ramp(), "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown upright as H wide, W high
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes())
    with Image.open(path) as opened:
        from_pil = col.colorize(opened)
    assert from_pil.size == col.colorize(path).size == (H, W)


def test_cli_onnx_backend_messages(model_path: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "p.png"
    Image.fromarray(ramp(), "L").save(src)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    assert main(["colorize", str(src), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "m.onnx")]) == 1
    assert "is an ONNX graph: run it with `autocolor colorize --backend onnx" in capsys.readouterr().err
    assert main(["colorize", str(src), "-o", str(tmp_path / "o"), "--backend", "onnx", "--model", "m.onnx",
                 "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "runs on the CPU (ONNX Runtime): leave out --device" in err and "--temperature" not in err


def test_decoding_knobs_on_a_fidelity_model_are_noted(model_path: Path) -> None:
    notes: list[str] = []
    Colorizer.load(model_path, device="cpu", notice=notes.append, temperature=0.5, boost_max=2.0)
    assert notes == [f"{model_path} is not a classification model (like vivid): --temperature, --boost-max ignored"]
    notes.clear()
    Colorizer.load("vivid", device="cpu", notice=notes.append, temperature=0.5)
    assert notes == []


def test_animated_input_gets_a_note(model_path: Path, tmp_path: Path, capsys) -> None:
    frames = [Image.fromarray(ramp(), "L"), Image.fromarray(255 - ramp(), "L"), Image.fromarray(ramp() // 2, "L")]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:])
    still = tmp_path / "still.png"
    frames[0].save(still)
    assert main(["colorize", str(src), str(still), "-o", str(tmp_path / "o"), "--model", str(model_path)]) == 0
    err = capsys.readouterr().err
    assert f"{src} is animated (3 frames); colorizing its first frame" in err and "still.png" not in err


def test_multi_frame_files_that_are_not_animations_get_no_note(model_path: Path, tmp_path: Path, capsys) -> None:
    pages = [Image.fromarray(ramp(), "L"), Image.fromarray(255 - ramp(), "L")]
    tif = tmp_path / "scan.tif"
    pages[0].save(tif, save_all=True, append_images=pages[1:])  # a two-page TIFF: a document, not an animation
    assert main(["colorize", str(tif), "-o", str(tmp_path / "o"), "--model", str(model_path)]) == 0
    assert "animated" not in capsys.readouterr().err


def test_keep_folders_mirrors_the_tree(model_path: Path, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    for rel in ("a/x.png", "b/c/x.png", "top.png"):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ramp(), "L").save(photos / rel)
    loose = tmp_path / "loose.png"
    Image.fromarray(ramp(), "L").save(loose)
    out = tmp_path / "out"
    assert main(["colorize", str(photos), str(loose), "-o", str(out), "--keep-folders", "--model",
                 str(model_path)]) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["a/x.png", "b/c/x.png", "loose.png", "top.png"]  # a file given directly goes to OUTDIR
    capsys.readouterr()
    flat = tmp_path / "flat"
    assert main(["colorize", str(photos), "-o", str(flat), "--model", str(model_path)]) == 0
    assert sorted(p.name for p in flat.iterdir()) == ["top.png", "x-1.png", "x.png"]
    inside = photos / "colour"  # an OUTDIR inside the photos is not read back as input on a rerun
    for _ in range(2):
        assert main(["colorize", str(photos), "-o", str(inside), "--keep-folders", "--overwrite", "--model",
                     str(model_path)]) == 0
    assert sorted(str(p.relative_to(inside)) for p in inside.rglob("*.png")) == ["a/x.png", "b/c/x.png", "top.png"]


def test_keep_folders_with_links_globs_and_several_folders(model_path: Path, tmp_path: Path) -> None:
    def photo(rel: str) -> None:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ramp(), "L").save(tmp_path / rel)

    for rel in ("photos/a/x.png", "photos/b/x.png", "2019/trip/t.png", "2020/trip/t.png"):
        photo(rel)
    (tmp_path / "photos" / "a" / "link_b").symlink_to(tmp_path / "photos" / "b", target_is_directory=True)

    def tree(args: list[str], name: str) -> list[str]:
        out = tmp_path / name
        assert main(["colorize", *args, "-o", str(out), "--keep-folders", "--model", str(model_path)]) == 0
        return sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))

    # a link to a sibling folder keeps the sibling's own place; nesting an argument does not re-root its files
    assert tree([str(tmp_path / "photos")], "o1") == ["a/x.png", "b/x.png"]
    assert tree([str(tmp_path / "photos" / "a"), str(tmp_path / "photos")], "o2") == ["a/x.png", "b/x.png"]
    # a glob is measured from its fixed folder; several roots keep their own names, so trip/ folders do not merge
    assert tree([str(tmp_path / "photos" / "*")], "o3") == ["a/x.png", "b/x.png"]
    assert tree([str(tmp_path / "2019"), str(tmp_path / "2020")], "o4") == ["2019/trip/t.png", "2020/trip/t.png"]


def test_keep_folders_same_named_roots_and_unmatched_globs(tmp_path: Path, monkeypatch) -> None:
    from autocolor.batchpaths import expand_inputs, plan_outputs

    for rel in ("2019/photos/trip/t.png", "2020/photos/trip/t.png", "photos/x.png", "photos/a/y.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ramp(), "L").save(tmp_path / rel)
    monkeypatch.chdir(tmp_path)

    def tree(args: list[str]) -> list[str]:
        sub: dict = {}
        files, _ = expand_inputs(args, exclude="OUT", subfolders=sub)
        return [str(o) for o in plan_outputs(files, Path("OUT"), "png", sub)]

    # two roots named photos/ keep apart (photos/, photos-1/) instead of merging into one trip/ folder
    assert tree(["2019/photos", "2020/photos"]) == ["OUT/photos/trip/t.png", "OUT/photos-1/trip/t.png"]
    # a glob that matches nothing does not move the folder argument's files under the current folder's name
    assert tree(["photos", "*.jpg"]) == tree(["photos"]) == ["OUT/a/y.png", "OUT/x.png"]
    # names follow the arguments' order, and a root without photos takes no name
    (tmp_path / "2018" / "photos").mkdir(parents=True)
    assert tree(["2020/photos", "2018/photos", "2019/photos"]) == ["OUT/photos/trip/t.png",
                                                                   "OUT/photos-1/trip/t.png"]
    assert tree(["2020/photos", "2019/photos"])[0] == "OUT/photos/trip/t.png"


def test_output_folder_above_the_photos_still_finds_them(model_path: Path, tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    (tmp_path / "photos").mkdir()
    Image.fromarray(ramp(), "L").save(tmp_path / "photos" / "x.jpg")
    monkeypatch.chdir(tmp_path)
    assert main(["colorize", "photos", "-o", ".", "--model", str(model_path)]) == 0
    assert capsys.readouterr().out.split() == ["x.png"] and (tmp_path / "x.png").is_file()
    assert main(["colorize", "photos", "-o", "photos", "--model", str(model_path)]) == 1  # OUTDIR = the folder
    assert "images under -o photos are outputs and are skipped" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_outputs_keep_the_inputs_dpi_and_exif_without_orientation(model_path: Path, tmp_path: Path, fmt) -> None:
    exif = Image.Exif()
    exif[306], exif[271], exif[0x0112] = "2001:02:03 04:05:06", "ScanCo", 6  # date, make, rotate 90 degrees
    Image.fromarray(ramp(), "L").save(tmp_path / "scan.jpg", dpi=(600, 600), exif=exif.tobytes())
    assert main(["colorize", str(tmp_path / "scan.jpg"), "-o", str(tmp_path / "out"), "--format", fmt,
                 "--model", str(model_path)]) == 0
    with Image.open(tmp_path / "out" / f"scan.{fmt}") as out:
        assert out.size == (ramp().shape[0], ramp().shape[1])  # turned upright once, and not again by viewers
        assert dict(out.getexif()) == {306: "2001:02:03 04:05:06", 271: "ScanCo"}
        if fmt != "webp":  # WebP has no resolution field
            assert [round(v) for v in out.info["dpi"]] == [600, 600]


def test_api_settings_and_devices_are_user_errors(col: Colorizer, model_path: Path, monkeypatch) -> None:
    assert Colorizer.load(str(model_path), device=torch.device("cpu")).device == torch.device("cpu")
    for settings, why in ((dict(boost_max=9), "boost_max must be a number from 1 to 5"),
                          (dict(boost_max="x"), "boost_max must be a number from 1 to 5"),
                          (dict(max_pixels=-5), "max_pixels .* must be a whole number >= 1")):
        with pytest.raises(AutocolorError, match=why):
            Colorizer.load(str(model_path), **settings)
    with pytest.raises(AutocolorError, match="boost_max must be"):
        col.colorize(ramp(), boost_max=float("nan"))
    with pytest.raises(TypeError, match="Colorizer needs a model; got str"):
        Colorizer(model="default")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AutocolorError, match="no CUDA GPU is available"):
        Colorizer(model=col.model, device="cuda")


def test_direct_colorizers_take_any_device_torch_knows(col: Colorizer, model_path: Path) -> None:
    own = Colorizer.load(str(model_path), device="cpu")  # not the shared fixture: nothing here may move it
    for device in ("cpu:0", torch.device("cpu", 0), "auto"):
        built = Colorizer(model=own.model, device=device)
        assert built.device.type == "cpu" and next(built.model.parameters()).device.type == "cpu"
    elsewhere = Colorizer(model=own.model, device="meta")  # another device: a copy goes there
    assert next(elsewhere.model.parameters()).is_meta and elsewhere.model is not own.model
    assert next(own.model.parameters()).device.type == "cpu" and own.colorize(ramp()).size == (W, H)
    with pytest.raises(AutocolorError, match="unknown device 'tpu'"):
        Colorizer(model=col.model, device="tpu")
    assert Colorizer(model=col.model, max_pixels=0).max_pixels == 0  # no limit, as read_image takes it
    with pytest.raises(AutocolorError, match="boost_max must be"):
        Colorizer(model=col.model, boost_max=True)


def test_colorize_many_reads_a_generator_as_it_goes(col: Colorizer) -> None:
    pulled: list[int] = []

    def frames():
        for i in range(5):
            pulled.append(i)
            yield ramp()

    first = next(col.colorize_many(frames()))
    assert first.size == (ramp().shape[1], ramp().shape[0]) and pulled == [0]


def test_pil_images_with_junk_exif_or_closed_files(col: Colorizer, tmp_path: Path) -> None:
    from autocolor.imageio import ImageError

    Image.fromarray(ramp(), "L").save(tmp_path / "junk.webp", exif=b"junkjunkjunk", lossless=True)
    with Image.open(tmp_path / "junk.webp") as img:
        assert col.colorize(img).size == img.size  # as the same file given as a path
    img = Image.open(tmp_path / "junk.webp")
    img.close()
    with pytest.raises(ImageError, match="<image>: cannot decode"):
        col.colorize(img)


def test_metadata_that_would_break_an_output_is_left_out(col: Colorizer, tmp_path: Path) -> None:
    from autocolor.imageio import read_image

    Image.fromarray(ramp(), "L").save(tmp_path / "huge.tif", dpi=(4e9, 4e9))
    from PIL.TiffImagePlugin import IFDRational

    for name, tags in (("no_unit.jpg", {282: IFDRational(300, 1)}), ("div0.jpg", {282: IFDRational(1, 0), 296: 2})):
        bad = Image.Exif()
        bad.update({271: "Cam", **tags})  # an EXIF resolution Pillow cannot use: it reports 72 dpi
        Image.fromarray(ramp(), "L").save(tmp_path / name, exif=bad.tobytes())
        with Image.open(tmp_path / name) as img:
            assert img.info["dpi"] == (72, 72)
            assert "dpi" not in read_image(tmp_path / name).meta and "dpi" not in col.photo(img.copy()).meta
    exif = Image.Exif()
    exif[271] = "Cam"
    exif[0x8769] = {0x9003: "2001:02:03 04:05:06", 0xA005: 1234, 0x927C: b"maker offsets"}
    Image.fromarray(ramp(), "L").save(tmp_path / "cam.jpg", exif=exif.tobytes())
    assert "dpi" not in read_image(tmp_path / "huge.tif").meta
    camera = Image.Exif()
    camera[271] = "Phone"  # EXIF without a resolution and no JFIF header: Pillow fills in (72, 72)
    Image.fromarray(ramp(), "L").save(tmp_path / "phone.jpg", exif=camera.tobytes())
    with Image.open(tmp_path / "phone.jpg") as img:
        img.info.pop("jfif_unit", None)  # as in a file without APP0
        assert img.info["dpi"] == (72, 72) and "dpi" not in col.photo(img.copy()).meta
    Image.fromarray(ramp(), "L").save(tmp_path / "untagged.tif")
    with Image.open(tmp_path / "untagged.tif") as img:  # a copy has no TIFF tags: its (1, 1) is still not believed
        assert img.info["dpi"] == (1, 1) and "dpi" not in col.photo(img.copy()).meta
    kept = Image.Exif()
    kept.load(read_image(tmp_path / "cam.jpg").meta["exif"])
    assert kept.get_ifd(0x8769) == {0x9003: "2001:02:03 04:05:06"}  # offsets into the old file are not copied
    assert main(["colorize", str(tmp_path / "huge.tif"), "-o", str(tmp_path / "out"), "--model", col.name]) == 0


def test_16_bit_pgm_keeps_its_lightness(tmp_path: Path) -> None:
    from autocolor.imageio import read_image

    (tmp_path / "dark.pgm").write_bytes(b"P5 8 8 65535\n" + np.full((8, 8), 200, ">u2").tobytes())
    assert np.allclose(read_image(tmp_path / "dark.pgm").pixels, 200 / 65535)  # Pillow opens it as mode I

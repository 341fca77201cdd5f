"""The Gradio app through its HTTP API (gradio_client): good uploads, bad uploads, limits; the server survives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")
client_mod = pytest.importorskip("gradio_client")

from conftest import free_port  # noqa: E402

from autocolor.app import build_app, launch  # noqa: E402
from autocolor.models import build  # noqa: E402
from autocolor.weights import save_model  # noqa: E402

H, W = 40, 56
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),  # gradio's own pandas use
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_model(build("seed-lab").eval(), path, {})


@pytest.fixture(scope="module")
def server(model_path: Path):
    """The app on a free localhost port with small limits (0.05 MB, 20,000 pixels)."""
    app = build_app(models=[str(model_path)], max_upload_mb=0.05, max_pixels=20_000, device="cpu")
    launch(app, port=free_port(), max_upload_mb=0.05, block=False)
    client = client_mod.Client(app.local_url, verbose=False)
    yield client, str(model_path)
    app.close()


def upload(client, spec: str, path: Path, saturation: float = 1.0):
    return client.predict(client_mod.handle_file(str(path)), spec, saturation, api_name="/colorize")


def test_colorizes_upload(server, tmp_path: Path) -> None:
    client, spec = server
    src = tmp_path / "g.png"
    g = np.tile(np.linspace(30, 220, W).astype(np.uint8), (H, 1))
    Image.fromarray(g, "L").save(src)
    grey, colour, download = upload(client, spec, src)
    with Image.open(colour) as img, Image.open(download) as dl, Image.open(grey) as gi:
        arr = np.asarray(img.convert("RGB")).astype(int)
        assert img.size == dl.size == gi.size == (W, H)
        assert np.abs(arr[..., 0] - arr[..., 2]).mean() > 3  # coloured
        g_arr = np.asarray(gi.convert("RGB")).astype(int)
        assert np.abs(g_arr[..., 0] - g_arr[..., 2]).max() <= 1  # grey preview is grey
    assert Path(download).name == "g-colorized.png"


@pytest.mark.parametrize("kind, message", [
    ("text", "not an image"),
    ("pixels", "limit"),
    ("bytes", "exceeds the maximum file size|upload limit"),  # gradio refuses it before our handler
])
def test_bad_upload_is_an_error_not_a_crash(server, tmp_path: Path, kind: str, message: str) -> None:
    client, spec = server
    bad = tmp_path / "bad.png"
    if kind == "text":
        bad.write_text("definitely not a png")
    elif kind == "pixels":
        Image.new("L", (200, 200)).save(bad)  # 40,000 pixels > 20,000
    else:
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 80_000, dtype=np.uint8).tobytes())
    with pytest.raises(Exception, match=message):
        upload(client, spec, bad)
    good = tmp_path / "ok.png"
    Image.fromarray(np.full((H, W), 128, np.uint8), "L").save(good)
    assert Path(upload(client, spec, good)[1]).is_file()  # server still serves


def test_build_app_without_bundled_models(monkeypatch) -> None:
    import autocolor.weights as weights
    from autocolor.errors import AutocolorError

    monkeypatch.setattr(weights, "bundled_names", lambda: [])
    with pytest.raises(AutocolorError, match="no bundled model"):
        build_app()


def test_build_app_refuses_unusable_models_and_devices(tmp_path: Path) -> None:
    from autocolor.errors import AutocolorError

    with pytest.raises(AutocolorError, match="no trained model 'nothere'"):
        build_app(models=["default", "nothere"])
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(AutocolorError, match="is unfinished"):
        build_app(models=[str(tmp_path)])
    with pytest.raises(AutocolorError, match="unknown device 'bogus'"):
        build_app(models=["default"], device="bogus")


def test_serve_help(capsys) -> None:
    from autocolor.cli import main

    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--max-upload-mb" in out and "--max-pixels" in out and "--port" in out


def test_prune_deletes_only_old_results(tmp_path: Path) -> None:
    import os
    import time

    from autocolor.app import prune

    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        d.mkdir()
        (d / "photo-colorized.png").write_bytes(b"png")
    stale = time.time() - 7200
    os.utime(old, (stale, stale))
    assert prune(tmp_path, 3600) == 1
    assert not old.exists() and (new / "photo-colorized.png").exists()


def test_prune_keeps_the_results_folder_within_its_byte_cap(tmp_path: Path) -> None:
    import os
    import time

    from autocolor.app import prune

    now = time.time()
    for i in range(4):  # four recent results of 300 bytes, result0 the oldest
        d = tmp_path / f"result{i}"
        d.mkdir()
        (d / "photo-colorized.png").write_bytes(b"x" * 300)
        os.utime(d, (now - 100 + i, now - 100 + i))
    assert prune(tmp_path, 3600, max_bytes=1000) == 1  # 1200 bytes: the oldest goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result1", "result2", "result3"]
    assert prune(tmp_path, 3600, max_bytes=600) == 1
    assert prune(tmp_path, 3600, max_bytes=None) == 0 and prune(tmp_path, 3600, max_bytes=600) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result2", "result3"]


def test_previews_are_shown_small_and_oom_is_recognised() -> None:
    from autocolor import app as app_mod
    from autocolor.imageio import Photo

    assert app_mod._shown_size(8000, 6000) == (2048, 1536) and app_mod._shown_size(56, 40) == (56, 40)
    photo = Photo(np.tile(np.linspace(0, 1, 3000, dtype=np.float32), (10, 1)), None, False, "wide")
    grey = app_mod._grey_preview(photo)
    arr = np.asarray(grey).astype(int)
    assert grey.size == (2048, 7) and (arr[..., 0] == arr[..., 2]).all() and arr[..., 0].max() > 250
    assert app_mod._out_of_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory"))
    assert app_mod._out_of_memory(MemoryError()) and not app_mod._out_of_memory(RuntimeError("shape mismatch"))


def test_auth_file_is_parsed_strictly(tmp_path: Path) -> None:
    from autocolor.app import read_auth_file
    from autocolor.errors import AutocolorError

    good = tmp_path / "users"
    good.write_text("# who may log in\nann:s3cret:with:colons\n\nbob:pw\n")
    assert read_auth_file(good) == [("ann", "s3cret:with:colons"), ("bob", "pw")]
    for text, why in (("ann\n", "line 1 is not user:password"), ("# none\n", "no user:password lines"),
                      ("ann:ok\n:pw\n", "line 2 is not user:password")):
        good.write_text(text)
        with pytest.raises(AutocolorError, match=why):
            read_auth_file(good)
    with pytest.raises(AutocolorError, match="cannot read it"):
        read_auth_file(tmp_path / "missing")


def test_auth_keeps_the_app_behind_a_login(model_path: Path) -> None:
    import http.cookiejar
    import urllib.error
    import urllib.parse
    import urllib.request

    app = build_app(models=[str(model_path)], device="cpu")
    launch(app, port=free_port(), block=False, auth=[("ann", "s3cret")])
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(app.local_url + "config", timeout=30)
        assert exc.value.code == 401
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        wrong = urllib.parse.urlencode({"username": "ann", "password": "guess"}).encode()
        with pytest.raises(urllib.error.HTTPError):
            browser.open(app.local_url + "login", data=wrong, timeout=30)
        right = urllib.parse.urlencode({"username": "ann", "password": "s3cret"}).encode()
        assert browser.open(app.local_url + "login", data=right, timeout=30).status == 200
        assert browser.open(app.local_url + "config", timeout=30).status == 200
    finally:
        app.close()

"""Image-folder data: scanning (greyscale / corrupt files skipped), crops, load-time failures, train + evaluate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autocolor.batchpaths import expand_inputs
from autocolor.cli import main
from autocolor.errors import AutocolorError
from autocolor.folders import (
    FolderDataset,
    check_image,
    eval_loader,
    list_images,
    scan,
    split_folders,
    train_loader,
)

COLOUR_FORMATS = ["jpg", "png", "webp", "bmp", "gif", "tiff"]


def make_folder(root: Path, n: int = 24, seed: int = 0) -> Path:
    """A small photo tree: ``n`` colour images in sub-folders, two greyscale ones, a corrupt and a truncated file."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        yy, xx = np.mgrid[0:h, 0:w]
        base = rng.integers(0, 256, 3)
        rgb = np.stack([(xx * 255 // w + base[0]) % 256, (yy * 255 // h + base[1]) % 256,
                        (xx + yy + base[2]) % 256], axis=2).astype(np.uint8)
        ext = COLOUR_FORMATS[i % len(COLOUR_FORMATS)]
        folder = root / ("a" if i % 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"img{i:02d}.{ext}")
    grey = (np.arange(48 * 48).reshape(48, 48) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(root / "a" / "grey_mode_L.png")
    Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2)).save(root / "b" / "grey_as_rgb.jpg", quality=90)
    (root / "a" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 3)
    good = root / "a" / "img01.png"  # i = 1: a png in a/
    (root / "b" / "truncated.png").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (root / "notes.txt").write_text("not an image")
    return root


def test_check_image_classifies_colour_grey_and_broken(tmp_path):
    root = make_folder(tmp_path / "photos", n=2)
    assert check_image(str(root / "b/c/img00.jpg")) is None
    assert check_image(str(root / "a/grey_mode_L.png")) == "grey"
    assert check_image(str(root / "b/grey_as_rgb.jpg")) == "grey"  # RGB, channels equal within tolerance
    assert check_image(str(root / "a/corrupt.jpg")) not in (None, "grey")
    assert check_image(str(root / "b/truncated.png")) not in (None, "grey")


def test_scan_recurses_and_reports_skips(tmp_path):
    root = make_folder(tmp_path / "photos")
    found = scan(root, workers=2)
    assert len(found.files) == 24  # notes.txt is not an image
    assert {Path(p).name for p in found.grey} == {"grey_mode_L.png", "grey_as_rgb.jpg"}
    assert {Path(p).name for p, _ in found.bad} == {"corrupt.jpg", "truncated.png"}
    text = found.summary()
    assert "skipped 2 greyscale" in text and "skipped 2 unreadable" in text and "a/corrupt.jpg" in text


def test_scan_errors_are_user_errors(tmp_path):
    with pytest.raises(AutocolorError, match="does not exist"):
        scan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutocolorError, match="no .jpg"):
        scan(tmp_path / "empty")


def test_split_is_seeded_and_disjoint(tmp_path):
    root = make_folder(tmp_path / "photos")
    a, b = split_folders(str(root), val_fraction=0.2), split_folders(str(root), val_fraction=0.2)
    assert (a.train, a.val) == (b.train, b.val)
    assert len(a.val) == 5 and len(a.train) == 19 and not set(a.train) & set(a.val)
    assert "skipped 2 greyscale and 2 unreadable" in a.description
    other = make_folder(tmp_path / "val", n=6, seed=1)
    c = split_folders(str(root), val_images=str(other))
    assert len(c.train) == 24 and len(c.val) == 6 and all(v.startswith(str(other)) for v in c.val)


def test_crops_are_deterministic_per_epoch_and_centre_crop_is_centred(tmp_path):
    root = make_folder(tmp_path / "photos", n=4)
    ds = FolderDataset(scan(root).files, 32, train=True, seed=3)
    x, failed = ds[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and failed == -1
    assert torch.equal(ds[1][0], x)
    ds.epoch = 1
    assert not torch.equal(ds[1][0], x)
    # a wide image, red left third / green middle / blue right third: the centre crop is all green
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, :40, 0] = wide[:, 40:80, 1] = wide[:, 80:, 2] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    crop = FolderDataset([str(tmp_path / "wide.png")], 16, train=False)[0][0]
    assert crop[1].float().mean() > 250 and crop[0].float().mean() < 5 and crop[2].float().mean() < 5
    with pytest.raises(AutocolorError, match="multiple of 8"):
        FolderDataset([], 30, train=True)


def test_file_broken_after_scan_is_replaced_in_workers(tmp_path):
    root = make_folder(tmp_path / "photos", n=8)
    files = scan(root).files
    Path(files[2]).write_bytes(b"gone bad")
    ds = FolderDataset(files, 16, train=True)
    loader, _ = train_loader(ds, 4, rank=0, world=1, seed=0, workers=1, pin=False)
    seen_failed, n = [], 0
    for imgs, failed in loader:
        assert imgs.shape == (4, 3, 16, 16)
        seen_failed += [i for i in failed.tolist() if i >= 0]
        n += len(imgs)
    assert n == 8 and seen_failed == [2]
    part = [int(f) for _, fl in eval_loader(ds, 4, rank=1, world=2) for f in fl]
    assert len(part) == 4  # rank 1 of 2 scores images 1, 3, 5, 7


def test_a_deleted_run_of_neighbours_does_not_stop_a_sample(tmp_path, capsys):
    root = make_folder(tmp_path / "photos", n=24)
    files = scan(root).files
    for f in files[4:14]:  # ten neighbours in sorted order gone, e.g. a deleted sub-folder
        Path(f).unlink()
    ds = FolderDataset(files, 16, train=True)
    image, failed = ds[4]
    assert image.shape == (3, 16, 16) and failed == 4
    assert f"cannot load {files[4]}" in capsys.readouterr().err
    for f in files:
        Path(f).unlink(missing_ok=True)
    with pytest.raises(AutocolorError) as exc:
        ds[0]
    assert str(exc.value).startswith(f"{files[0]} and 7 other image(s) tried in its place failed to load")


@pytest.mark.parametrize("n", [1, 3, 8, 10, 24, 56])
def test_stand_ins_are_distinct_files(tmp_path, n, monkeypatch):
    ds = FolderDataset([str(tmp_path / f"{i}.png") for i in range(n)], 16, train=True)
    tried: list[int] = []

    def fail(i):
        tried.append(i)
        raise OSError("gone")

    monkeypatch.setattr(ds, "load", fail)
    with pytest.raises(AutocolorError, match=f"and {min(8, n) - 1} other image"):
        ds[n // 2]
    assert len(set(tried[:min(8, n)])) == min(8, n)  # never the same file twice while others are untried


def test_train_on_folder_then_evaluate_it(tmp_path, capsys):
    torch.set_num_threads(1)
    root = make_folder(tmp_path / "photos", n=24)
    out = tmp_path / "run"
    code = main(["train", "--images", str(root), "--image-size", "32", "--val-fraction", "0.2", "--epochs", "1",
                 "--batch-size", "8", "--workers", "1", "--out", str(out), "--precision", "fp32"])
    log = capsys.readouterr()
    assert code == 0, log.err
    assert "skipped 2 greyscale" in log.out and "grey_mode_L.png" in log.out and "corrupt.jpg" in log.out
    assert "19 images of 32x32, validating on 5" in log.out
    card = json.loads((out / "model.json").read_text())
    assert card["image_size"] == 32 and card["training"]["image_size"] == 32
    assert "image folder" in card["training"]["data"] and card["training"]["processes"] == 1
    assert (out / "samples" / "epoch_001.png").is_file()
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(rec["val_loss"]) and rec["val_psnr"] > 5
    code = main(["evaluate", "--model", str(out), "--images", str(root), "--json", "--grid",
                 str(tmp_path / "grid.png"), "--max-images", "10"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["n_images"] == 10 and res["image_size"] == 32
    assert res["skipped"] == {"greyscale": 2, "unreadable": 2} and (tmp_path / "grid.png").is_file()
    assert main(["evaluate", "--model", str(out), "--images", str(root), "--no-grid", "--max-images", "10"]) == 0
    assert "skipped: 2 greyscale, 2 unreadable file(s)" in capsys.readouterr().out  # the text output says so too


def test_sampler_shards_and_resumes_part_way(tmp_path):
    root = make_folder(tmp_path / "photos", n=10)
    ds = FolderDataset(scan(root).files, 16, train=True)
    shares = []
    for rank in (0, 1):
        _, sampler = train_loader(ds, 2, rank=rank, world=2, seed=5, workers=0, pin=False)
        sampler.set_epoch(3)
        full = list(sampler)
        sampler.start = 2  # resume after one local batch of 2
        assert list(sampler) == full[2:] and len(sampler) == 3
        shares.append(full)
    assert len(shares[0]) == len(shares[1]) == 5 and not set(shares[0]) & set(shares[1])


def test_links_add_each_file_once_and_the_run_folder_is_not_scanned(tmp_path):
    """A link loop, a second link to the same photos and the run's own outputs inside the photos add nothing."""
    root = make_folder(tmp_path / "photos", n=6)
    plain = list_images(root)
    (root / "a" / "again").symlink_to(root, target_is_directory=True)  # a loop
    (root / "b" / "same_as_a").symlink_to(root / "a", target_is_directory=True)
    assert list_images(root) == plain
    run = root / "run"
    (run / "samples").mkdir(parents=True)
    Image.new("RGB", (40, 40), (200, 30, 30)).save(run / "samples" / "epoch_001.png")
    assert len(list_images(root)) == len(plain) + 1 and list_images(root, exclude=run) == plain
    files, _ = expand_inputs([str(root)])
    assert sorted(map(os.path.realpath, map(str, files))) == sorted(map(os.path.realpath, list_images(root)))


def test_val_images_inside_the_training_folder_are_not_trained_on(tmp_path):
    root = make_folder(tmp_path / "photos", n=12)
    split = split_folders(str(root), val_images=str(root / "a"))
    val = {os.path.realpath(f) for f in split.val}
    assert val and not val & {os.path.realpath(f) for f in split.train}
    assert "also under" in split.description and "left out of training" in split.description
    with pytest.raises(AutocolorError, match="is also in --val-images"):
        split_folders(str(root / "a"), val_images=str(root))


def test_scan_leaves_the_warning_filters_as_they_were(tmp_path):
    import warnings

    root = make_folder(tmp_path / "photos", n=8)
    before = list(warnings.filters)
    scan(root, workers=4)
    assert warnings.filters == before


def test_resume_refuses_a_changed_folder(tmp_path, capsys):
    torch.set_num_threads(1)
    root = make_folder(tmp_path / "photos", n=24)
    out = root / "run"  # inside the photos: its own sample sheets must not become training images
    argv = ["train", "--images", str(root), "--image-size", "32", "--val-fraction", "0.2", "--epochs", "2",
            "--batch-size", "8", "--workers", "0", "--out", str(out), "--precision", "fp32",
            "--model-config", '{"widths": [8, 16, 32]}']
    assert main([*argv, "--stop-after", "1"]) == 0
    capsys.readouterr()
    (root / "a" / "img01.png").unlink()
    assert main([*argv, "--resume"]) == 1
    assert "--resume: the image folders changed since" in capsys.readouterr().err


def test_out_at_or_above_the_photos_is_not_excluded(tmp_path):
    root = make_folder(tmp_path / "photos", n=4)
    plain = list_images(root)
    assert list_images(root, exclude=root) == plain and list_images(root, exclude=tmp_path) == plain


def test_train_refuses_out_equal_to_the_photo_folder(tmp_path, capsys):
    root = make_folder(tmp_path / "photos", n=4)
    val = make_folder(tmp_path / "val", n=2)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for out, flag in ((root, "--images"), (tmp_path / "photos" / ".." / "val", "--val-images")):
        assert main(["train", "--images", str(root), "--val-images", str(val), "--out", str(out)]) == 1
        assert f"is the {flag} folder" in capsys.readouterr().err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing was written into the photos


def test_folder_inputs_keep_folder_by_folder_order(tmp_path):
    """`Summer/` before `Summer 2020/`, as Path sorting gave (output names -N follow this order)."""
    for folder in ("Summer", "Summer 2020"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8), (9, 99, 199)).save(tmp_path / folder / "photo.png")
    files, _ = expand_inputs([str(tmp_path)])
    assert [f.parent.name for f in files] == ["Summer", "Summer 2020"]


def test_resume_fingerprint_ignores_where_the_folder_is_reached_from(tmp_path, monkeypatch):
    from autocolor.sources import fingerprint as _fingerprint

    root = make_folder(tmp_path / "photos", n=12)
    a = split_folders(str(root), val_fraction=0.2)
    monkeypatch.chdir(tmp_path)
    b = split_folders("photos", val_fraction=0.2)
    (tmp_path / "moved").symlink_to(root, target_is_directory=True)
    c = split_folders(str(tmp_path / "moved"), val_fraction=0.2)
    assert _fingerprint(a, False) == _fingerprint(b, False) == _fingerprint(c, False)
    (root / "a" / "img01.png").unlink()
    assert _fingerprint(split_folders(str(root), val_fraction=0.2), False) != _fingerprint(a, False)


def test_other_runs_inside_the_photos_are_not_photos(tmp_path):
    root = make_folder(tmp_path / "photos", n=4)
    plain = list_images(root)
    for name, markers in (("r1", ["metrics.jsonl", "checkpoint.pt"]), ("r3", ["model.json", "model.safetensors"])):
        run = root / "runs" / name
        (run / "samples").mkdir(parents=True)
        for marker in markers:
            (run / marker).write_bytes(b"")
        Image.new("RGB", (40, 40), (200, 30, 30)).save(run / "loss_curve.png")
        Image.new("RGB", (40, 40), (30, 200, 30)).save(run / "samples" / "epoch_001.png")
    kept = []
    for name, marker in (("r4", "model.json"), ("r5", "metrics.jsonl"), ("r6", "checkpoint.pt")):
        (root / "runs" / name).mkdir()  # one file of a run's alone (another tool's log, say): still photos
        (root / "runs" / name / marker).write_text("{}")
        Image.new("RGB", (40, 40), (30, 30, 200)).save(root / "runs" / name / "photo.png")
        kept.append(str(root / "runs" / name / "photo.png"))
    assert list_images(root) == sorted([*plain, *kept])
    assert list_images(root / "runs" / "r1") != []  # a run folder given itself is read as asked


def test_cheap_train_errors_come_before_the_folder_scan(tmp_path, capsys, monkeypatch):
    import autocolor.folders as folders_mod

    torch.set_num_threads(1)
    root = make_folder(tmp_path / "photos", n=12)
    argv = ["train", "--images", str(root), "--val-fraction", "0.2", "--epochs", "2", "--batch-size", "4",
            "--workers", "0", "--precision", "fp32", "--model", "unet", "--model-config", '{"widths": [8, 16, 32]}']
    assert main([*argv, "--image-size", "32", "--out", str(tmp_path / "run"), "--stop-after", "1"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(folders_mod, "scan", lambda *a, **k: pytest.fail("scanned before a cheap check"))
    assert main([*argv, "--image-size", "36", "--out", str(tmp_path / "other")]) == 1  # unet: 4, crops: 8
    assert "needs image sides that are multiples of 8" in capsys.readouterr().err
    assert main([*argv, "--image-size", "40", "--out", str(tmp_path / "run"), "--resume"]) == 1
    assert "holds a run with --image-size 32 (now 40)" in capsys.readouterr().err
    (tmp_path / "file.jpg").write_bytes(b"x")
    assert main([*argv, "--out", str(tmp_path / "file.jpg")]) == 1
    assert "--out " + str(tmp_path / "file.jpg") + ": is a file, not a folder" in capsys.readouterr().err
    monkeypatch.undo()
    assert main([*argv, "--val-images", str(tmp_path / "file.jpg"), "--out", str(tmp_path / "v")]) == 1
    assert "--val-images: image folder" in capsys.readouterr().err

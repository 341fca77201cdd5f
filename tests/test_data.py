"""CIFAR-10 loading: the real splits, the restricted unpickler, batch validation and where data is looked for."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import batch_bytes, make_fake_cifar

from autocolor import data
from autocolor.errors import AutocolorError

SIZES = {"train": 45_000, "val": 5_000, "trainval": 50_000, "test": 10_000}


def _fingerprints(split: data.Split) -> list[str]:
    """One digest per image, equal exactly when the pixels are equal."""
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in split.images.numpy()]


# --- the real data -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SIZES))
def test_split_shapes_and_dtypes(splits, name):
    s = splits["get"](name)
    assert s.images.shape == (SIZES[name], 3, 32, 32)
    assert s.images.dtype == torch.uint8 and s.labels.dtype == torch.int64
    assert s.labels.shape == (SIZES[name],)
    assert int(s.labels.min()) == 0 and int(s.labels.max()) == 9
    assert s.images.is_contiguous()


def test_class_balance(splits):
    assert torch.bincount(splits["get"]("trainval").labels, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(splits["get"]("test").labels, minlength=10).tolist() == [1000] * 10


def test_first_test_labels_and_pixels(splits):
    test = splits["get"]("test")
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    # Channel-major layout: the first 1024 bytes of a row are the red plane, row by row.
    raw = pickle.load(open(splits["dir"] / data.FOLDER / "test_batch", "rb"), encoding="bytes")[b"data"][0]
    assert torch.equal(test.images[0], torch.from_numpy(raw.reshape(3, 32, 32)))


def test_val_and_train_are_disjoint_and_cover_trainval(splits):
    train, val, trainval = (_fingerprints(splits["get"](n)) for n in ("train", "val", "trainval"))
    assert len(set(trainval)) == 50_000  # no exact duplicates, so digests identify images
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(trainval)


def test_class_names(cifar_dir):
    assert data.class_names(cifar_dir)[:4] == ["airplane", "automobile", "bird", "cat"]


def test_epoch_batches_seeded_and_sharded(splits):
    small = splits["get"]("test").subset(slice(0, 100))
    before = small.images.clone()
    a = [x for x, _ in data.epoch_batches(small, 32, seed=1, epoch=0)]
    b = [x for x, _ in data.epoch_batches(small, 32, seed=1, epoch=0)]
    c = [x for x, _ in data.epoch_batches(small, 32, seed=1, epoch=1)]
    assert len(a) == 3 and all(x.shape == (32, 3, 32, 32) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert torch.equal(small.images, before), "augmentation must not modify the split in place"
    halves = [[x for x, _ in data.epoch_batches(small, 32, 1, 0, shard=(r, 2))] for r in (0, 1)]
    assert all(h.shape[0] == 16 for h in halves[0] + halves[1])
    for full, h0, h1 in zip(a, *halves, strict=True):
        assert torch.equal(full.sort(0).values, torch.cat([h0, h1]).sort(0).values)


def test_shift_images_translates_with_mirrored_borders():
    x = torch.arange(2 * 4 * 5, dtype=torch.uint8).reshape(2, 1, 4, 5)
    out = data.shift_images(x, torch.tensor([1, 0]), torch.tensor([0, -2]))
    assert torch.equal(out[0, 0, 1:], x[0, 0, :3]) and torch.equal(out[0, 0, 0], x[0, 0, 1])  # down 1, mirrored
    assert torch.equal(out[1, 0, :, :3], x[1, 0, :, 2:]) and torch.equal(out[1, 0, :, 3:], x[1, 0, :, 2:4].flip(-1))
    assert torch.equal(data.shift_images(x, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)), x)


def test_epoch_batches_shift_keeps_order_and_flips(splits):
    small = splits["get"]("test").subset(slice(0, 64))
    plain = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2)]
    shifted = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2, shift=4)]
    again = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2, shift=4)]
    assert all(torch.equal(a, b) for a, b in zip(shifted, again, strict=True)), "shifts are seeded"
    assert not torch.equal(plain[0], shifted[0])
    # same images in the same order: the centre (never affected by a shift of <= 4) mostly matches
    centre = (slice(None), slice(None), slice(12, 20), slice(12, 20))
    same = [(a[centre].float() - b[centre].float()).abs().mean() for a, b in zip(plain, shifted, strict=True)]
    other = (plain[0][centre].float() - plain[1][centre].float()).abs().mean()
    assert max(same) < other


def test_zoom_images_crops_and_upsamples():
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ones, zeros = torch.ones(3), torch.zeros(3)
    assert torch.equal(data.zoom_images(x, ones, -ones, ones), x), "a scale of 1 is the identity wherever placed"
    ramp = (torch.arange(8, dtype=torch.uint8) * 30).expand(1, 1, 8, 8).contiguous()
    top_left = data.zoom_images(ramp, torch.tensor([2.0]), -torch.ones(1), -torch.ones(1))[0, 0]
    bottom_right = data.zoom_images(ramp, torch.tensor([2.0]), torch.ones(1), torch.ones(1))[0, 0]
    assert top_left.max() < 105 < bottom_right.min(), "x2: the left / right half of the ramp (its middle is 105)"
    assert torch.equal(top_left[0], top_left[5]), "a horizontal ramp stays constant down each column"
    assert (top_left[0].diff() >= 0).all() and top_left[0, -1] > top_left[0, 0], "still increasing, stretched"
    flat = torch.full((1, 3, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(data.zoom_images(flat, torch.tensor([1.7]), zeros[:1], zeros[:1]), flat)


def test_epoch_batches_zoom_keeps_order_flips_and_shifts(splits):
    small = splits["get"]("test").subset(slice(0, 64))
    plain = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2, shift=2)]
    zoomed = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2, shift=2, zoom=0.3)]
    again = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2, shift=2, zoom=0.3)]
    assert all(torch.equal(a, b) for a, b in zip(zoomed, again, strict=True)), "zooms are seeded"
    assert not torch.equal(plain[0], zoomed[0])
    diff = [(a.float() - b.float()).abs().mean() for a, b in zip(plain, zoomed, strict=True)]
    other = (plain[0].float() - plain[1].float()).abs().mean()
    assert max(diff) < other / 2, "the same images in the same order, only rescaled"


def test_contrast_images_scales_about_the_mean():
    x = torch.tensor([[[[100, 140], [120, 120]]]], dtype=torch.uint8).expand(2, 3, 2, 2).contiguous()
    assert torch.equal(data.contrast_images(x, torch.ones(2)), x)
    out = data.contrast_images(x, torch.tensor([0.5, 20.0]))
    assert out[0, 0].tolist() == [[110, 130], [120, 120]], "halved about the mean 120"
    assert out[1, 0].tolist() == [[0, 255], [120, 120]], "clipped to 8 bits"


def test_epoch_batches_contrast_keeps_the_other_augmentations(splits):
    small = splits["get"]("test").subset(slice(0, 64))
    plain = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2, shift=2, zoom=0.2)]
    jittered = [x for x, _ in data.epoch_batches(small, 32, seed=3, epoch=2, shift=2, zoom=0.2, contrast=0.3)]
    assert not torch.equal(plain[0], jittered[0])
    for a, b in zip(plain, jittered, strict=True):  # the same pixels, each image's deviations from its mean rescaled
        da = a.float() - a.float().mean(dim=(1, 2, 3), keepdim=True)
        db = b.float() - b.float().mean(dim=(1, 2, 3), keepdim=True)
        ratio = (da * db).sum(dim=(1, 2, 3)) / (da * da).sum(dim=(1, 2, 3))
        assert ((ratio > 0.65) & (ratio < 1.35)).all(), ratio


def test_unknown_split_is_a_user_error():
    with pytest.raises(AutocolorError, match="unknown split 'dev'"):
        data.load_split("dev")


# --- the restricted unpickler and batch validation ----------------------------------------------------------

class _Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "eval"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    if how == "os.system":
        payload = _Evil(os.system, f"touch {marker}")
    else:
        payload = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
    path.write_bytes(pickle.dumps({b"data": payload, b"labels": []}, protocol=2))
    with pytest.raises(AutocolorError, match="refusing to load") as exc:
        data.safe_unpickle(path)
    assert str(path) in str(exc.value)
    assert "forbidden global" in str(exc.value)
    assert not marker.exists(), "the pickle's payload ran"


def test_valid_batch_round_trips(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(batch_bytes(7, seed=3))
    images, labels = data._read_batch(path)
    assert images.shape == (7, 3072) and images.dtype == np.uint8
    assert labels.tolist() == list(range(7))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_repickled_batch_loads_with_any_protocol(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    pixels = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": pixels, b"labels": [0, 1, 2, 3, 9]}, protocol=protocol))
    images, labels = data._read_batch(path)
    assert np.array_equal(images, pixels)
    assert labels.tolist() == [0, 1, 2, 3, 9]


@pytest.mark.parametrize("cut", [0, 1, 40, 0.5, -1])
def test_truncated_batch_names_the_file(tmp_path, cut):
    full = batch_bytes(20, seed=0)
    n = int(len(full) * cut) if isinstance(cut, float) else (len(full) + cut if cut < 0 else cut)
    path = tmp_path / "data_batch_2"
    path.write_bytes(full[:n])
    with pytest.raises(AutocolorError, match="corrupt or truncated CIFAR-10 batch") as exc:
        data._read_batch(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("obj, why", [
    ([1, 2, 3], "expected a dict"),
    ({b"data": np.zeros((4, 3072), np.uint8)}, "expected a dict"),
    ({b"data": np.zeros((4, 1000), np.uint8), b"labels": [0] * 4}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "uint8"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "3 labels for 4 images"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, "labels outside 0..9"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, -1, 2]}, "labels outside 0..9"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": 5}, r"labels must be a list of integers, got int64 of shape"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [[0]]}, r"of shape \(1, 1\)"),
    ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [b"a"]}, "labels must be a list of integers"),
])
def test_malformed_batch_names_the_file(tmp_path, obj, why):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(AutocolorError, match=why) as exc:
        data._read_batch(path)
    assert str(path) in str(exc.value)


def test_load_split_reports_a_bad_file(fake_cifar):
    bad = fake_cifar / data.FOLDER / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    assert len(data.load_split("test", fake_cifar, download=False)) == 10
    with pytest.raises(AutocolorError, match="data_batch_3"):
        data.load_split("trainval", fake_cifar, download=False)


# --- where the data is looked for ---------------------------------------------------------------------------

def test_data_flag_wins_over_env(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    make_fake_cifar(a)
    make_fake_cifar(b)
    monkeypatch.setenv(data.ENV_VAR, str(b))
    assert data.locate(a, download=False) == a / data.FOLDER
    assert data.locate(None, download=False) == b / data.FOLDER


def test_accepts_parent_and_folder_itself(fake_cifar):
    folder = fake_cifar / data.FOLDER
    assert data.locate(fake_cifar, download=False) == folder
    assert data.locate(folder, download=False) == folder
    assert len(data.load_split("test", folder, download=False)) == 10


def test_existing_data_dir_without_data_is_an_error(tmp_path, fake_cifar, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(fake_cifar))  # a fallback exists, but --data was explicit
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AutocolorError, match=f"--data {empty}: no {data.FOLDER}"):
        data.locate(empty)


def test_missing_data_dir_is_an_error_not_a_fallback(tmp_path, fake_cifar, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(fake_cifar))
    with pytest.raises(AutocolorError, match=f"--data {tmp_path / 'typo'}: no such folder"):
        data.locate(tmp_path / "typo")


def test_candidate_roots_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(data.ENV_VAR, "/env/dir")
    assert data.candidate_roots("/flag/dir") == [Path("/flag/dir"), Path("/env/dir"), tmp_path / ".cache/autocolor",
                                                 tmp_path / ".keras/datasets"]


def test_found_in_home_cache(no_data_anywhere):
    make_fake_cifar(no_data_anywhere / ".keras" / "datasets")
    assert data.locate() == no_data_anywhere / ".keras" / "datasets" / data.FOLDER


def test_no_data_no_network_is_one_clear_line(no_data_anywhere):
    with pytest.raises(AutocolorError) as exc:
        data.locate()
    msg = str(exc.value)
    assert "\n" not in msg
    assert "CIFAR-10 not found" in msg and "could not download" in msg
    assert str(no_data_anywhere / ".cache" / "autocolor") in msg
    assert str(no_data_anywhere / ".keras" / "datasets") in msg
    assert not (no_data_anywhere / ".cache" / "autocolor" / data.FOLDER).exists()
    assert list((no_data_anywhere / ".cache" / "autocolor").iterdir()) == []  # no temp folders left


def test_no_data_without_download(no_data_anywhere):
    with pytest.raises(AutocolorError, match="pass --data DIR or set AUTOCOLOR_DATA"):
        data.locate(download=False)


def test_any_damage_to_a_pickle_is_one_line(tmp_path):
    """Damage that pickle reports as OverflowError or LookupError (not only truncation) is a user error too."""
    good = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=4)
    frame = good.index(b"\x95") + 1  # protocol 4: the first frame's 8-byte length follows opcode 0x95
    bad = tmp_path / "data_batch_1"
    bad.write_bytes(good[:frame] + b"\xff" * 8 + good[frame + 8:])
    with pytest.raises(AutocolorError, match="corrupt or truncated CIFAR-10 batch .*replace .* with a fresh copy"):
        data._read_batch(bad)
    latin = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    bad.write_bytes(latin.replace(b"latin1", b"lqtin1"))
    with pytest.raises(AutocolorError, match="corrupt or truncated"):
        data._read_batch(bad)


def test_env_var_is_strict_like_data(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(AutocolorError, match=f"{data.ENV_VAR}={tmp_path / 'typo'}: no such folder"):
        data.locate(download=False)
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "cifar-10-python.tar.gz").write_bytes(b"")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "dl"))
    with pytest.raises(AutocolorError, match="holds the archive: unpack it there with tar xzf"):
        data.locate(download=False)


def test_a_small_copy_leaves_no_training_split(fake_cifar):
    with pytest.raises(AutocolorError, match="50 training images, and the 5,000 held out for validation leave none"):
        data.load_split("train", fake_cifar, download=False)
    assert len(data.load_split("val", fake_cifar, download=False)) == 50


def test_unreadable_is_not_called_corrupt_and_the_advice_fits_the_copy(tmp_path, monkeypatch):
    with pytest.raises(AutocolorError, match="cannot read .*: Is a directory") as exc:
        data.safe_unpickle(tmp_path)
    assert "corrupt" not in str(exc.value)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cached = tmp_path / "home" / ".cache" / "autocolor" / data.FOLDER / "data_batch_1"
    assert data.refetch_hint(cached).startswith("delete ") and "download a fresh copy" in data.refetch_hint(cached)
    mine = tmp_path / "mine" / data.FOLDER / "data_batch_1"
    assert data.refetch_hint(mine) == f"replace {mine.parent} with a fresh copy of CIFAR-10's python version"
    with pytest.raises(AutocolorError, match="--data: empty path"):
        data.locate("")

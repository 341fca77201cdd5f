"""Short real training runs on CIFAR-10 (CPU, fp32): loss falls, outputs, resume, signals, NaN guard."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from conftest import load_script
from safetensors.torch import load_file

import autocolor.checkpoint as checkpoint_mod
import autocolor.sources as sources_mod
import autocolor.train as train_mod
from autocolor.errors import AutocolorError
from autocolor.train import CHECKPOINT, TrainConfig, TrainingInterrupted, train

PNG = b"\x89PNG\r\n\x1a\n"
TINY = (8, 16, 32)  # same layers as the real seed models, narrower, so runs take seconds on 2 busy cores


@pytest.fixture(scope="module", autouse=True)
def fast(splits):
    """Real CIFAR-10 read once (session cache) and narrow seed models for every run in this module."""
    from autocolor.data import Split, load_split
    from autocolor.models import build

    def cached(name, data_dir=None, download=True):
        if data_dir is not None:
            return load_split(name, data_dir, download=download)
        s = splits["get"](name)
        return Split(s.images.clone(), s.labels.clone())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources_mod, "load_split", cached)
        mp.setattr(train_mod, "build", lambda name, **config: build(name, **{"widths": TINY, **config}))
        yield


def _cfg(tmp_path, name: str, **kw) -> TrainConfig:
    base = dict(model="seed-lab", epochs=2, batch_size=32, max_images=128, out=str(tmp_path / name), device="cpu",
                precision="fp32", seed=0, command="autocolor train --model seed-lab --stop-after 1 --resume")
    return TrainConfig(**{**base, **kw})


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A 2-epoch run without interruption (the reference for resume tests)."""
    return train(_cfg(tmp_path_factory.mktemp("straight"), "run"), log=lambda *a: None)


def test_short_run_learns_and_writes_everything(tmp_path):
    logs: list[str] = []
    cfg = _cfg(tmp_path, "run", max_images=512, batch_size=64, command="autocolor train --max-images 512")
    run = train(cfg, log=logs.append)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["train_loss"] < records[0]["train_loss"]
    assert all(torch.isfinite(torch.tensor([r["val_psnr"], r["val_psnr_grey"]])).all() for r in records)
    assert all(0.0 < r["val_ssim"] < 1.0 for r in records)
    card = json.loads((run / "model.json").read_text())
    assert card["architecture"] == "seed-lab" and card["config"] == {"widths": list(TINY)}
    assert card["training"]["command"] == "autocolor train --max-images 512"
    assert card["training"]["seconds"] > 0 and card["training"]["epochs"] == 2
    assert card["training"]["seconds_with_validation"] > card["training"]["seconds"]  # validation is counted there
    assert card["metrics"]["validation"] == records[-1]
    assert "512 images for training, 256 held out" in card["training"]["data"]
    for f in ["loss_curve.png", "samples/epoch_001.png", "samples/epoch_002.png"]:
        assert (run / f).read_bytes()[:8] == PNG, f
    assert (run / CHECKPOINT).is_file() and (run / "model.safetensors").is_file()
    assert any("epoch 2/2" in line for line in logs)


def test_final_fit_trains_on_all_fifty_thousand(tmp_path):
    held_out, _ = sources_mod.cifar_splits(_cfg(tmp_path, "a", max_images=None))
    everything, val = sources_mod.cifar_splits(_cfg(tmp_path, "b", max_images=None, final_fit=True))
    assert (len(held_out), len(everything), len(val)) == (45_000, 50_000, 5_000)
    seen = {bytes(img.numpy()) for img in everything.images}
    assert all(bytes(img.numpy()) in seen for img in val.images[:200])  # the validation images are trained on
    run = train(_cfg(tmp_path, "run", epochs=1, final_fit=True), log=lambda *a: None)
    card = json.loads((run / "model.json").read_text())
    assert card["training"]["final_fit"] is True and "(final fit): 128 images for training" in card["training"]["data"]


def test_card_command_drops_resume_flags():
    assert train_mod._replay_command("autocolor train --epochs 3 --stop-after 1 --resume --stop-after=2") == \
        "autocolor train --epochs 3"


def test_stop_after_then_resume_is_bit_identical(tmp_path, straight):
    cfg = _cfg(tmp_path, "run", stop_after=1)
    run = train(cfg, log=lambda *a: None)
    assert not (run / "model.safetensors").exists()
    assert (run / "samples" / "epoch_001.png").is_file() and not (run / "samples" / "epoch_002.png").exists()
    logs: list[str] = []
    train(_cfg(tmp_path, "run", resume=True), log=logs.append)
    assert any("resuming" in line and "epoch 2" in line for line in logs)
    _assert_identical(_weights(run), _weights(straight))
    a = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_then_resume_completes(tmp_path, straight, monkeypatch, signum):
    real = sources_mod.epoch_batches

    def batches_then_signal(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if kwargs.get("epoch", args[3] if len(args) > 3 else None) == 1 and i == 1:
                os.kill(os.getpid(), signum)  # arrives while step 2 of epoch 2 is being trained
            yield batch

    monkeypatch.setattr(sources_mod, "epoch_batches", batches_then_signal)
    before = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted, match=f"stopped by signal {int(signum)}; checkpoint saved"):
        train(_cfg(tmp_path, "run"), log=lambda *a: None)
    assert signal.getsignal(signum) is before, "signal handlers must be restored"
    run = tmp_path / "run"
    ck = torch.load(run / CHECKPOINT, weights_only=True)
    assert (ck["epoch"], ck["step"]) == (1, 2)
    assert not (run / "model.safetensors").exists()
    monkeypatch.setattr(sources_mod, "epoch_batches", real)
    train(_cfg(tmp_path, "run", resume=True), log=lambda *a: None)
    _assert_identical(_weights(run), _weights(straight))


def test_unreadable_batch_checkpoints_then_resume_completes(tmp_path, straight, monkeypatch):
    """A batch that cannot be read (a folder changed under a DataLoader worker) stops with the worker's own message
    in one line; the steps done in that epoch are saved, and --resume finishes as if nothing happened."""
    real = sources_mod.epoch_batches

    def batches_then_fail(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if kwargs.get("epoch", args[3] if len(args) > 3 else None) == 1 and i == 2:
                raise AutocolorError("Caught AutocolorError in DataLoader worker process 0.\nOriginal Traceback "
                                     "(most recent call last):\n  File x\nautocolor.errors.AutocolorError: a.png: "
                                     "truncated")
            yield batch

    monkeypatch.setattr(sources_mod, "epoch_batches", batches_then_fail)
    with pytest.raises(AutocolorError) as exc:
        train(_cfg(tmp_path, "run"), log=lambda *a: None)
    assert str(exc.value) == (f"reading the training images failed at epoch 2, step 2: a.png: truncated; checkpoint "
                              f"saved at step 2 in {tmp_path / 'run'}: restore or fix the files, then continue with "
                              "--resume")
    ck = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert (ck["epoch"], ck["step"]) == (1, 2)
    monkeypatch.setattr(sources_mod, "epoch_batches", real)
    train(_cfg(tmp_path, "run", resume=True), log=lambda *a: None)
    _assert_identical(_weights(tmp_path / "run"), _weights(straight))


def test_unreadable_batch_on_a_full_disk_names_both_failures(tmp_path, monkeypatch):
    real, real_save, saves = sources_mod.epoch_batches, checkpoint_mod.save, []

    def batches_then_fail(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if kwargs.get("epoch", args[3] if len(args) > 3 else None) == 1 and i == 2:
                raise AutocolorError("a.png: truncated")
            yield batch

    def save_once(path, state):
        saves.append(state["epoch"])
        if len(saves) > 1:
            raise OSError(28, "No space left on device")
        real_save(path, state)

    monkeypatch.setattr(sources_mod, "epoch_batches", batches_then_fail)
    monkeypatch.setattr(checkpoint_mod, "save", save_once)
    with pytest.raises(AutocolorError) as exc:
        train(_cfg(tmp_path, "run"), log=lambda *a: None)
    assert str(exc.value) == ("reading the training images failed at epoch 2, step 2: a.png: truncated; saving a "
                              "checkpoint failed too ([Errno 28] No space left on device); the last epoch's "
                              "checkpoint is kept")
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["epoch"] == 1


def test_a_finished_or_started_run_is_not_overwritten(tmp_path, straight):
    before = _weights(straight)
    with pytest.raises(AutocolorError, match="already holds a training run; continue it with --resume"):
        train(_cfg(straight.parent, straight.name, epochs=1), log=lambda *a: None)
    _assert_identical(_weights(straight), before)
    metrics = (straight / "metrics.jsonl").read_text()
    (straight / "metrics.jsonl").unlink()  # as if killed between the last checkpoint and its metrics
    logs: list[str] = []
    train(_cfg(straight.parent, straight.name, resume=True), log=logs.append)  # finished: saved again, same
    assert any("finished all 2 epochs already" in line for line in logs)
    _assert_identical(_weights(straight), before)
    assert (straight / "metrics.jsonl").read_text() == metrics  # rewritten from the checkpoint's records
    other = train(_cfg(tmp_path, "again", epochs=1), log=lambda *a: None)
    train(_cfg(tmp_path, "again", epochs=1, overwrite=True), log=lambda *a: None)  # what benchmark scripts do
    assert len((other / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_compares_image_folders_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    assert checkpoint_mod.setting("images", "photos/") == checkpoint_mod.setting("images", str(tmp_path / "photos"))
    assert checkpoint_mod.setting("images", "photos") != checkpoint_mod.setting("images", "other")
    assert checkpoint_mod.setting("epochs", 3) == 3 and checkpoint_mod.setting("val_images", None) is None


def test_unwritable_sample_sheet_is_a_warning_not_a_lost_epoch(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples").write_bytes(b"")  # a file where the sample-sheet folder goes
    logs: list[str] = []
    train(_cfg(tmp_path, "run", epochs=1), log=logs.append)
    assert (run / "model.safetensors").is_file() and (run / CHECKPOINT).is_file()
    assert any(line.startswith("warning: could not write") for line in logs)


def test_signal_during_validation_stops_after_that_epoch(tmp_path, straight, monkeypatch):
    real = train_mod.validate

    def validate_then_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while epoch 1 is being validated
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "validate", validate_then_signal)
    with pytest.raises(TrainingInterrupted, match="checkpoint saved .* after epoch 1"):
        train(_cfg(tmp_path, "run"), log=lambda *a: None)
    run = tmp_path / "run"
    ck = torch.load(run / CHECKPOINT, weights_only=True)
    assert (ck["epoch"], ck["step"]) == (1, 0)
    monkeypatch.setattr(train_mod, "validate", real)
    train(_cfg(tmp_path, "run", resume=True), log=lambda *a: None)
    _assert_identical(_weights(run), _weights(straight))


def test_nan_loss_stops_with_clear_error(tmp_path, monkeypatch):
    from autocolor.nets import ColorNet

    real = ColorNet.loss
    monkeypatch.setattr(ColorNet, "loss", lambda self, raw, lab, rgb: real(self, raw, lab, rgb) * float("nan"))
    with pytest.raises(AutocolorError, match="loss became NaN/inf at epoch 1") as exc:
        train(_cfg(tmp_path, "run", epochs=1), log=lambda *a: None)
    assert "--lr" in str(exc.value) and not isinstance(exc.value, TrainingInterrupted)
    assert str(exc.value).endswith("no checkpoint was saved")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resume_errors(tmp_path):
    with pytest.raises(AutocolorError, match="--resume: no checkpoint at"):
        train(_cfg(tmp_path, "none", resume=True), log=lambda *a: None)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(AutocolorError, match="cannot read checkpoint") as exc:
        train(_cfg(tmp_path, "bad", resume=True), log=lambda *a: None)
    assert "\n" not in str(exc.value) and "weights_only=False" not in str(exc.value)
    torch.save({"a": 1}, bad / CHECKPOINT)
    with pytest.raises(AutocolorError, match="is not an autocolor training checkpoint"):
        train(_cfg(tmp_path, "bad", resume=True), log=lambda *a: None)
    assert not (tmp_path / "none").exists()  # a run that failed before writing anything leaves no folder


def test_interrupted_training_exits_130_from_the_cli_and_scripts(monkeypatch, capsys, tmp_path):
    from autocolor import cli
    from autocolor.errors import run_main

    def stopped(*args, **kwargs):
        raise TrainingInterrupted("stopped by signal 15; checkpoint saved in run, continue with --resume")

    monkeypatch.setattr(train_mod, "train", stopped)
    assert cli.main(["train", "--out", str(tmp_path / "run")]) == 130
    with pytest.raises(SystemExit) as exc:
        run_main(stopped, "sweep.py")  # a benchmark script that trains
    assert exc.value.code == 130
    assert capsys.readouterr().err.splitlines() == [
        "autocolor: error: stopped by signal 15; checkpoint saved in run, continue with --resume",
        "sweep.py: error: stopped by signal 15; checkpoint saved in run, continue with --resume"]


def test_resume_with_other_settings_is_refused(tmp_path):
    train(_cfg(tmp_path, "run", stop_after=1, epochs=2), log=lambda *a: None)
    with pytest.raises(AutocolorError, match=r"holds a run with --epochs 2 \(now 3\); pass the same settings"):
        train(_cfg(tmp_path, "run", resume=True, epochs=3), log=lambda *a: None)


@pytest.mark.parametrize("change", [{"batch_size": 16}, {"max_images": 256}, {"seed": 1}, {"final_fit": True},
                                    {"model_config": {"widths": [8, 16, 16]}}])
def test_resume_with_other_data_settings_is_refused(tmp_path, change):
    """A resumed run must see the same batches; otherwise the LR schedule and data order silently break."""
    train(_cfg(tmp_path, "run", stop_after=1), log=lambda *a: None)
    with pytest.raises(AutocolorError, match="--resume: .* pass the same") as exc:
        train(_cfg(tmp_path, "run", resume=True, **change), log=lambda *a: None)
    assert next(iter(change)).replace("_", "-") in str(exc.value)


def test_batch_larger_than_data_is_a_user_error(tmp_path):
    with pytest.raises(AutocolorError, match="--batch-size 256 is larger than the 128 training images"):
        train(_cfg(tmp_path, "run", batch_size=256), log=lambda *a: None)


def _bundle_script():
    return load_script("scripts/bundle.py")


def test_bundle_final_fit_carries_its_heldout_twin(tmp_path, straight, monkeypatch):
    bundle = _bundle_script()
    monkeypatch.setattr(bundle, "BUNDLED", tmp_path / "bundled")
    final = train(_cfg(tmp_path, "final", final_fit=True), log=lambda *a: None)
    dst = bundle.bundle(str(final), "mine", heldout=str(straight))
    card = json.loads(dst.with_suffix(".json").read_text())
    assert card["name"] == "mine" and card["training"]["final_fit"] is True
    assert card["training"]["command"] == "autocolor train --model seed-lab"  # resume flags dropped
    assert [h["epoch"] for h in card["training"]["history"]] == [1, 2]
    twin = card["training"]["heldout_run"]
    assert [h["epoch"] for h in twin["history"]] == [1, 2] and "held out for validation" in twin["data"]
    _assert_identical(load_file(str(dst)), _weights(final))
    with pytest.raises(AutocolorError, match="itself a final fit"):
        bundle.bundle(str(final), "other", heldout=str(final))
    before = dst.read_bytes()
    with pytest.raises(AutocolorError, match="mine is already bundled .*; pass --overwrite"):
        bundle.bundle(str(straight), "mine")
    assert dst.read_bytes() == before
    assert bundle.bundle(str(straight), "mine", overwrite=True) == dst and dst.read_bytes() != before
    for bad in ("../../evil", "sub/x", ""):
        with pytest.raises(AutocolorError, match="use letters, digits"):
            bundle.bundle(str(straight), bad)
    assert sorted(p.name for p in (tmp_path / "bundled").iterdir()) == ["mine.json", "mine.safetensors"]


def test_model_config_errors_are_user_errors(tmp_path):
    with pytest.raises(AutocolorError, match="does not fit unet: stem must be 1, 2 or 4"):
        train(_cfg(tmp_path, "a", model="unet", model_config={"stem": 3}), log=lambda *a: None)
    # a misspelt option names itself and lists the ones the architecture has
    with pytest.raises(AutocolorError, match=r"unet has no option 'widthz'; its options: widths, .*objective"):
        train(_cfg(tmp_path, "c", model="unet", model_config={"widthz": [8]}), log=lambda *a: None)
    # a 2x2 stem and five levels need sides that are multiples of 32; with a 4x4 stem, 64: CIFAR-10's 32 is not
    with pytest.raises(AutocolorError, match="multiples of 64, and the training images are 32x32"):
        train(_cfg(tmp_path, "b", model="unet", model_config={"stem": 4, "widths": (4, 8, 8, 8, 8)}),
              log=lambda *a: None)


def test_auxiliary_class_head_trains_on_cifar_labels(tmp_path):
    """``classes`` 10 takes CIFAR-10's labels into the loss (a train_step without them is refused); other class
    counts and image folders are refused before any data is read."""
    run = train(_cfg(tmp_path, "aux", model="unet", epochs=1, model_config={"classes": 10}), log=lambda *a: None)
    assert "classify.weight" in _weights(run)
    card = json.loads((run / "model.json").read_text())
    assert card["config"]["classes"] == 10
    model = train_mod.build("unet", classes=10)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(AutocolorError, match="class labels"):
        train_mod.train_step(model, model, opt, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.device("cpu"),
                             "fp32")
    with pytest.raises(AutocolorError, match=r"works only on CIFAR-10 \(not with --images\) and with \"classes\": 10"):
        train(_cfg(tmp_path, "b", model="unet", model_config={"classes": 5}), log=lambda *a: None)
    with pytest.raises(AutocolorError, match=r"works only on CIFAR-10 \(not with --images\) and with \"classes\": 10"):
        train(_cfg(tmp_path, "c", model="unet", model_config={"classes": 10}, images=str(tmp_path)),
              log=lambda *a: None)


def test_loss_curve_draws_validation_ssim_where_recorded(tmp_path):
    """Records from before ``val_ssim`` existed still plot; with it, the SSIM curve is drawn too."""
    from autocolor.plots import loss_curve

    old = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_psnr": 24.0 + e} for e in (1, 2, 3)]
    new = [{**r, "val_ssim": 0.93 + 0.001 * r["epoch"]} for r in old]
    a, b = loss_curve(old, tmp_path / "old.png"), loss_curve(new, tmp_path / "new.png")
    assert a.read_bytes()[:8] == b.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() != b.read_bytes()


def test_sync_bn_in_one_process_is_noted(tmp_path):
    logs: list[str] = []
    train(_cfg(tmp_path, "run", epochs=1, sync_bn=True), log=logs.append)
    assert any(line.startswith("note: --sync-bn applies under torchrun") for line in logs)

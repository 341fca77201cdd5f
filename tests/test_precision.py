"""Precision choice and the fast training path: bf16 autocast really runs bf16, fp32 stays fp32."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from autocolor import runtime
from autocolor import train as train_mod
from autocolor.cli import main
from autocolor.errors import AutocolorError
from autocolor.models import build
from autocolor.runtime import pick_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(("has_bf16", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_follows_cpu_bf16_support(monkeypatch, has_bf16, expected):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: has_bf16)
    assert pick_precision("auto", CPU) == expected


@pytest.mark.parametrize("has_bf16", [True, False])
@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_explicit_precision_is_kept(monkeypatch, has_bf16, name):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: has_bf16)
    assert pick_precision(name, CPU) == name


@pytest.mark.parametrize("name", ["fp16", "float32", "", "BF16"])
def test_invalid_precision_is_a_user_error(name):
    with pytest.raises(AutocolorError, match="unknown precision"):
        pick_precision(name, CPU)


def test_invalid_precision_on_the_command_line(capsys):
    assert main(["train", "--precision", "fp16", "--epochs", "1"]) == 2
    assert "fp16" in capsys.readouterr().err


def test_cpu_has_bf16_reads_cpu_flags(monkeypatch):
    monkeypatch.setattr(runtime.Path, "read_text", lambda self: "flags : fpu avx512f avx512_bf16 amx_tile\n")
    assert runtime.cpu_has_bf16()
    monkeypatch.setattr(runtime.Path, "read_text", lambda self: "flags : fpu sse2 avx2\n")
    assert not runtime.cpu_has_bf16()
    monkeypatch.setattr(runtime.Path, "read_text", lambda self: "Features : fp asimd sve bf16 i8mm\n")
    assert runtime.cpu_has_bf16()  # Arm on Linux


def test_cpu_has_bf16_without_proc_cpuinfo(monkeypatch):
    """macOS: asks sysctl for FEAT_BF16 (M1 has no bf16: fp32 there); other systems without the file: fp32."""
    import subprocess

    def no_file(self):
        raise OSError("no /proc")

    monkeypatch.setattr(runtime.Path, "read_text", no_file)
    monkeypatch.setattr(runtime.platform, "system", lambda: "Darwin")
    for answer, expected in (("1\n", True), ("0\n", False), ("", False)):
        monkeypatch.setattr(runtime.subprocess, "run",
                            lambda *a, answer=answer, **k: subprocess.CompletedProcess(a, 0, answer, ""))
        assert runtime.cpu_has_bf16() is expected
    monkeypatch.setattr(runtime.platform, "system", lambda: "Windows")
    assert runtime.cpu_has_bf16() is False


def _record_dtypes(model: torch.nn.Module) -> dict[str, set[torch.dtype]]:
    """Forward hooks noting the output dtype of every convolution (the FLOP-heavy layers)."""
    seen: dict[str, set[torch.dtype]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            mod.register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, set()).add(o.dtype))
    return seen


def _one_step(precision: str) -> tuple[float, dict[str, set[torch.dtype]], torch.nn.Module]:
    """One optimisation step exactly as ``train`` runs it (channels_last input, autocast, fp32 loss)."""
    torch.manual_seed(0)
    model = build("seed-lab").to(memory_format=torch.channels_last).train()
    dtypes = _record_dtypes(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    imgs = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    loss = train_mod.train_step(model, model, opt, imgs, CPU, precision)
    return float(loss.detach()), dtypes, model


def test_bf16_step_runs_convolutions_in_bf16():
    loss, dtypes, model = _one_step("bf16")
    assert math.isfinite(loss) and loss > 0
    assert len(dtypes) == 7  # 3 encoder convs, 3 decoder transposed convs, the head
    assert all(d == {torch.bfloat16} for d in dtypes.values()), dtypes
    # master weights and their gradients stay fp32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_fp32_step_runs_convolutions_in_fp32():
    loss, dtypes, _ = _one_step("fp32")
    assert math.isfinite(loss) and loss > 0
    assert len(dtypes) == 7
    assert all(d == {torch.float32} for d in dtypes.values()), dtypes


def test_bf16_and_fp32_steps_agree_roughly():
    assert _one_step("bf16")[0] == pytest.approx(_one_step("fp32")[0], rel=0.05)


def _fake_cifar(root, per_file: int = 1100) -> None:
    """A CIFAR-10 folder of random images, big enough for the 5,000-image validation hold-out."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per_file).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))


def test_train_runs_bf16_when_asked(tmp_path, monkeypatch):
    """The real ``train`` loop under ``--precision bf16``: its model computes in bf16 and the run ends finite."""
    precision = "bf16"
    _fake_cifar(tmp_path / "data")
    hooks: list[dict[str, set[torch.dtype]]] = []

    def build_and_watch(name, **config):
        model = build(name, **config)
        hooks.append(_record_dtypes(model))
        return model

    monkeypatch.setattr(train_mod, "build", build_and_watch)
    cfg = train_mod.TrainConfig(model="seed-lab", epochs=1, batch_size=32, max_images=96, out=str(tmp_path / "run"),
                                device="cpu", precision=precision, data=str(tmp_path / "data"))
    out = train_mod.train(cfg, log=lambda *a: None)
    (dtypes,) = hooks
    assert len(dtypes) == 7 and all(torch.bfloat16 in d for d in dtypes.values())
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(rec["train_loss"]) and math.isfinite(rec["val_loss"])
    assert rec["images_per_s"] > 0
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["precision"] == precision



@pytest.mark.parametrize(("has_bf16", "expected"), [(True, "bf16"), (False, "fp32")])
def test_inference_defaults_to_the_fast_precision(monkeypatch, has_bf16, expected):
    from autocolor.colorize import Colorizer

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: has_bf16)
    col = Colorizer(model=build("seed-lab"), size=32)
    assert col.precision == expected
    assert Colorizer(model=build("seed-lab"), size=32, precision="fp32").precision == "fp32"


def test_colorizer_bf16_runs_convolutions_in_bf16_and_stays_close():
    from PIL import Image

    from autocolor.colorize import Colorizer

    torch.manual_seed(0)
    model = build("seed-lab").eval()
    image = Image.fromarray((np.random.default_rng(0).random((40, 48)) * 255).astype(np.uint8), "L")
    out = {}
    for precision in ("bf16", "fp32"):
        col = Colorizer(model=model, size=32, precision=precision)
        seen = []
        col.model.encoder[0][0].register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.dtype))
        out[precision] = np.asarray(col.colorize(image)).astype(int)
        assert seen == [torch.bfloat16 if precision == "bf16" else torch.float32]
    assert out["bf16"].shape == (40, 48, 3)
    assert 0 < np.abs(out["bf16"] - out["fp32"]).max() <= 3


def test_warmup_fraction_avoids_a_zero_length_warmup():
    import torch

    assert runtime.warmup_fraction(5, 0.2) == 0.3 and runtime.warmup_fraction(4, 0.25) == 0.375
    assert runtime.warmup_fraction(2, 0.5) == 0.75
    assert runtime.warmup_fraction(351 * 40, 0.2) == 0.2 and runtime.warmup_fraction(1, 0.2) == 0.2
    for pct in (0.1, 0.2, 0.25, 0.3, 0.5):
        for total in range(1, 25):  # every short run steps through its whole schedule
            opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total,
                                                        pct_start=runtime.warmup_fraction(total, pct))
            for _ in range(total):
                opt.step()
                sched.step()

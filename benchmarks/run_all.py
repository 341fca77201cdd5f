"""Run the speed benchmarks and write benchmarks/RESULTS.md (a markdown table for the README).

    python benchmarks/run_all.py [--quick] [--out benchmarks/RESULTS.md]

Runs train_throughput.py, infer_throughput.py and photo_1mp.py one after another (each interleaves its own
contenders, so the ratios inside one script are measured side by side under the same load). GPU figures come
from a CUDA machine: ``benchmarks/gpu_check.sh`` there writes ``gpu_throughput.json`` and the training
commands' metrics, which live in ``benchmarks/results/gpu/``; this script renders them when present.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import ROOT, load  # noqa: E402

from autocolor.errors import AutocolorError, run_main  # noqa: E402

SCRIPTS = ["train_throughput.py", "infer_throughput.py", "photo_1mp.py"]


BUNDLED_PHOTO = ["default", "vivid"]  # photo_1mp.py also times the shipped models at their own working sizes


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def run(script: str, quick: bool, folder: Path, env: dict[str, str], threads: int | None) -> dict:
    """Run one script; its JSON gets the date and the command that measured it (each table says where it came
    from, also when ``--only`` reran just some of them)."""
    out = folder / f"{Path(script).stem}.json"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / script), "--json", str(out)] + (["--quick"] if quick else [])
    if threads and script != "photo_1mp.py":
        cmd += ["--threads", str(threads)]
    if script == "photo_1mp.py":
        cmd += ["--bundled", *BUNDLED_PHOTO]
    shown = shlex.join(["python", f"benchmarks/{script}", *cmd[2:]]).replace(f"{ROOT}/", "")
    print(f"$ {shown}", flush=True)
    started = _now()
    code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    if code:  # the script printed its own error above; RESULTS.md is left as it was
        raise AutocolorError(f"{script} failed (exit status {code}); nothing was rendered" if code > 0
                             else f"{script} was stopped by signal {-code}; nothing was rendered")
    res = stamped(json.loads(out.read_text()), started, shown)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


def stamped(res: dict, started: str, command: str) -> dict:
    """A script's results with when and by what command they were measured (keys of its own stay as they are)."""
    return {**res, "measured_at": started, "measured_by": command}


def provenance(res: dict) -> str:
    """One line: when, where and under what load a script's figures were measured."""
    when = res.get("measured_at", "date not recorded")
    return f"Measured {when} on {res['machine']}, {res['load']}."


def _versions() -> str:
    import onnxruntime
    import torch

    parts = [f"Python {platform.python_version()}", f"torch {torch.__version__}",
             f"onnxruntime {onnxruntime.__version__}"]
    keras_py = ROOT / ".venv-keras" / "bin" / "python"
    if keras_py.exists():
        code = "import keras, tensorflow as tf; print(keras.__version__, tf.__version__)"
        got = subprocess.run([str(keras_py), "-c", code], capture_output=True, text=True,
                             env={"TF_CPP_MIN_LOG_LEVEL": "3"})
        if got.returncode == 0 and got.stdout.split():
            k, t = got.stdout.split()[-2:]
            parts.append(f"Keras {k} + TensorFlow-CPU {t}")
    return ", ".join(parts)


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def gpu_markdown(folder: Path) -> list[str]:
    """The GPU section, from ``gpu_throughput.json`` and the CUDA training commands' metrics in ``folder``."""
    path = folder / "gpu_throughput.json"
    if not path.is_file():
        return []
    gpu = json.loads(path.read_text())
    rows = {(r["model"], r["what"], r["precision"], r["batch"]): r for r in gpu["rows"]}
    lines = [
        "", f"## GPU: {gpu['device']}", "",
        f"`benchmarks/gpu_throughput.py` on a borrowed {gpu['device']} (torch {gpu['torch']}, CUDA {gpu['cuda']}), "
        "run by `benchmarks/gpu_check.sh`; channels_last, cudnn autotuning, random uint8 images, medians of "
        f"{gpu['rounds']} interleaved rounds. Training = the step `autocolor train` runs (Lab conversion, autocast "
        "forward, loss, AdamW); inference = the BatchNorm-folded model `Colorizer`/`evaluate` run.", "",
        "| model | batch | train bf16 img/s | train fp32 img/s | infer bf16 img/s | infer fp32 img/s "
        "| train bf16, % of bf16 GEMM |", "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, batch in sorted({(k[0], k[3]) for k in rows}, key=lambda k: (k[0] != "seed", k[1])):
        def ips(what: str, precision: str, model=model, batch=batch) -> str:
            r = rows.get((model, what, precision, batch))
            return _fmt(r and r["images_per_s"])
        frac = rows.get((model, "train", "bf16", batch), {}).get("gemm_fraction")
        lines.append(f"| {model} | {batch} | {ips('train', 'bf16')} | {ips('train', 'fp32')} | "
                     f"{ips('infer', 'bf16')} | {ips('infer', 'fp32')} | {_fmt(frac and 100 * frac, '.1f')}% |")
    gains = [r["images_per_s"] / rows[(r["model"], r["what"], r["precision"], 128)]["images_per_s"]
             for r in gpu["rows"] if r["batch"] == 1024 and (r["model"], r["what"], r["precision"], 128) in rows]
    more = f", and batch 1024 runs {min(gains):.1f}-{max(gains):.1f}x more images per second" if gains else ""
    lines += ["", f"bf16 GEMM 8192^3 on this GPU: {gpu['gemm_bf16_tflops']:.0f} TFLOP/s. At batch 128 a 32x32 "
              f"network is bound by kernel launches, not arithmetic: bf16 is no faster than fp32 there{more}."]
    seed = folder / "train_seed_metrics.jsonl"
    if seed.is_file():
        recs = [json.loads(x) for x in seed.read_text().splitlines() if x.strip()]
        last = recs[-1]
        lines += ["", "The whole command `autocolor train --model seed --device cuda` (bf16 autocast, cudnn "
                  f"autotuning) on a {len(recs)}-epoch run over a small carried CIFAR-10 subset: epoch "
                  f"{last['epoch']} trained at {last['images_per_s']:.0f} img/s "
                  "(its metrics.jsonl; epoch 1 includes cudnn's autotuning). "
                  "`torchrun --nproc-per-node=1` (NCCL) with `--stop-after 1` then `--resume` ran there too."]
    got = {(d, p): json.loads(f.read_text()) for d in ("cuda", "cpu") for p in ("bf16", "fp32")
           if (f := folder / f"eval_default_{d}_{p}.json").is_file()}
    if len(got) == 4:
        n = got["cuda", "bf16"]["n_images"]
        lines += ["", f"`autocolor evaluate --model default` (the `default` bundled then: 40 epochs on 45,000 "
                  f"images, mirrored views only) on the first {n} test images: PSNR "
                  f"{got['cuda', 'bf16']['psnr']:.4f} dB (bf16) / {got['cuda', 'fp32']['psnr']:.4f} (fp32) with "
                  f"`--device cuda` there, {got['cpu', 'bf16']['psnr']:.4f} / {got['cpu', 'fp32']['psnr']:.4f} "
                  "with `--device cpu` here."]
    return lines


def markdown(train: dict, infer: dict, photo: dict, command: str, started: str, load_before: str,
             gpu_folder: Path | None = None, load_after: str | None = None) -> str:
    from autocolor.runtime import machine_name

    lines = [
        "# Speed benchmarks", "",
        f"Rendered by `{command}` ({started}, {machine_name()}); each table says when and where it was "
        "measured.", "",
        f"Software: {_versions()}.", "",
        f"Load while it ran: {load_before} before, {load_after or load()} after. The machine was shared with other "
        "jobs, "
        "so every script interleaves its contenders round by round and the ratios are medians of per-round "
        "ratios measured side by side; absolute figures are lower than on a quiet machine. img/CPU-s (images "
        "per CPU-second used by the process, all threads) is the load-robust figure. Torch ran with "
        f"{train['omp']}; TensorFlow uses its own thread pool. Threads: {train['threads']} for both.", "",
    ]
    if train["threads"] == 1:
        lines += [
            "One thread per process: on an oversubscribed machine oneDNN's bf16 (AMX) backward-weights kernels spin "
            "at a barrier while their partner thread is descheduled (measured about 1 s instead of 17 ms per call for "
            "the seed 64->3 head at batch 128), which makes multi-threaded bf16 training figures meaningless there; "
            "one thread per process measures per-core speed for both frameworks.", "",
        ]
    lines += [
        "## Seed autoencoder, CIFAR-10 32x32, batch 128", "",
        f"Training: {provenance(train)} Inference: {provenance(infer)}", "",
        "| what | autocolor img/s | Keras/TF img/s | ratio | autocolor img/CPU-s | Keras/TF img/CPU-s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, res: dict, name: str) -> str:
        w, c, k = res["images_per_s"], res.get("images_per_cpu_s", {}), "keras/tf fp32"
        rw = res.get("ratio_vs_keras", {}).get(name)
        rc = res.get("cpu_ratio_vs_keras", {}).get(name)
        return (f"| {label} | {_fmt(w.get(name))} | {_fmt(w.get(k))} | {_fmt(rw, '.2f')}x "
                f"| {_fmt(c.get(name))} | {_fmt(c.get(k))} | {_fmt(rc, '.2f')}x |")

    lines.append(row("training step, bf16 autocast", train, "autocolor bf16"))
    lines.append(row("training step, fp32", train, "autocolor fp32"))
    tr, keras_train = train.get("ratio_vs_keras", {}), train["images_per_s"].get("keras/tf fp32")
    cmd = train.get("command")
    if cmd:
        key = "autocolor train command (metrics images_per_s)"
        lines.append(f"| whole `autocolor train --model seed` ({cmd['images']} images, 1 epoch), its metrics.jsonl "
                     f"images_per_s | {_fmt(cmd['images_per_s'])} | {_fmt(keras_train)} | "
                     f"{_fmt(tr.get(key), '.2f')}x | | | |")
        key = "autocolor train command (wall, incl. start-up + validation)"
        lines.append(f"| same command over its whole wall time ({cmd['wall_s']:.1f} s incl. start-up, data "
                     f"loading, validation) | {_fmt(cmd['wall_images_per_s'])} | {_fmt(keras_train)} | "
                     f"{_fmt(tr.get(key), '.2f')}x | | | |")
    for name in [k for k in infer["images_per_s"] if k != "keras/tf fp32"]:
        lines.append(row(f"inference, {name.replace('autocolor ', 'autocolor torch ')}", infer, name))
    if infer.get("default"):
        d = infer["fold_max_abs_diff"]
        lines += ["", f"`{infer['default'].replace('autocolor ', 'autocolor torch ')}` is what `Colorizer`, "
                  "`autocolor colorize`, `evaluate` and `serve` run without options on this CPU: the model with "
                  "BatchNorm folded into the convolutions at load time (`autocolor.fuse`), under `--precision auto` "
                  "(bf16 where the CPU runs it natively, else fp32). Folded vs unfolded output: at most "
                  f"{d['fp32']:.1e} apart in fp32, {d['bf16']:.1e} in bf16."]
    if infer.get("compile"):
        c = infer["compile"]
        lines += ["", f"torch.compile (inductor, freezing) took {c['compile_s']:.1f} s to compile; its bf16 output "
                  f"differs from eager bf16 by at most {c['max_abs_diff_vs_eager']:.1e}."]
    lines += [
        "", f"Training: {train['train_gflop_per_image']:.3f} GFLOP per image (3 x forward convolutions); measured "
        f"2048^3 bf16 GEMM {train['gemm_bf16_gflops']:.0f} GFLOP/s; the bf16 training step reaches "
        f"{train['gemm_fraction_bf16_step']:.0%} of it. Medians of {train['rounds']} interleaved rounds of "
        f"{train['steps']} steps; inference {infer['rounds']} rounds of {infer['steps']} batches.", "",
        "## 1-megapixel photo, end to end", "",
        f"JPEG decode -> CIE L* -> model at long side {photo['size']} -> bilinear a*b* upsample -> Lab to sRGB -> "
        f"JPEG encode, {photo['pixels']:,} pixels, median of {photo['rounds']} rounds, torch's default threads. "
        "The `autocolor` rows run a seed-lab with untrained weights (speed does not depend on the weight values); "
        "the `bundled` rows run the shipped models as `autocolor colorize` does, at each card's working size. "
        f"{provenance(photo)}", "",
        "| backend | total s | decode | colorize | encode |", "|---|---:|---:|---:|---:|",
    ]
    for name, s in photo["seconds"].items():
        lines.append(f"| {name} | {s['total']:.3f} | {s['decode']:.3f} | {s['colorize']:.3f} | {s['encode']:.3f} |")
    if gpu_folder is not None:
        lines += gpu_markdown(gpu_folder)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run of every script")
    ap.add_argument("--out", default=None, help="markdown table (default benchmarks/RESULTS.md; with --quick "
                    "benchmarks/results-quick/RESULTS.md)")
    ap.add_argument("--results", default=None, help="folder for each script's JSON results (default "
                    "benchmarks/results, with --quick benchmarks/results-quick)")
    ap.add_argument("--only", nargs="*", choices=[Path(s).stem for s in SCRIPTS], default=None,
                    help="rerun only these scripts (none: just re-render); the others' results are read back "
                         "from --results")
    ap.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "default"],
                    help="OMP_WAIT_POLICY for torch (PASSIVE: idle threads sleep instead of spinning, which matters "
                         "on a shared machine; 'default' leaves the environment as it is)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for torch and TensorFlow in the training and 32x32 inference benchmarks; 1 gives "
                         "stable per-core figures on an oversubscribed machine (default: torch's default)")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    started = _now()
    load_before = load()
    command = shlex.join(["python", "benchmarks/run_all.py", *sys.argv[1:]])
    folder = Path(args.results or HERE / ("results-quick" if args.quick else "results"))
    out = Path(args.out or (folder / "RESULTS.md" if args.quick else HERE / "RESULTS.md"))
    results = []
    for script in SCRIPTS:
        if args.only is not None and Path(script).stem not in args.only:
            results.append(json.loads((folder / f"{Path(script).stem}.json").read_text()))
        else:
            results.append(run(script, args.quick, folder, env, args.threads))
    meta_path = folder / "run_all_meta.json"
    if args.only is None or args.only:  # something was measured now: this run's date, command and load go on top
        meta = {"started": started, "command": command, "load_before": load_before, "load_after": load()}
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    else:  # only re-rendered: keep the header of the run that measured the CPU figures
        meta = json.loads(meta_path.read_text())
    text = markdown(*results, **meta, gpu_folder=folder / "gpu")
    out.write_text(text)
    print(f"\nwrote {out}\n\n{text}")


if __name__ == "__main__":
    run_main(main)

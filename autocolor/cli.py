"""The ``autocolor`` command (click). User errors print one line and exit non-zero, never a traceback."""

from __future__ import annotations

import json
import os
import shlex
import sys

import click

from autocolor.errors import AutocolorError, error_prefix
from autocolor.files import why_unwritable

DEVICE = click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
DATA = click.option("--data", "data", default=None, metavar="DIR",
                    help="Folder holding cifar-10-batches-py/ (default: $AUTOCOLOR_DATA, ~/.cache/autocolor, "
                         "~/.keras/datasets, else download).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="autocolor")
def cli() -> None:
    """Automatic colorization of greyscale images with convolutional autoencoders."""


@cli.command()
@click.option("--model", "model", default="seed-lab", show_default=True, help="Architecture name (see --list).")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True,
              help="Global batch: under torchrun it is split evenly over all processes.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=1e-4, show_default=True, help="AdamW weight decay.")
@click.option("--max-images", type=click.IntRange(1), default=None, help="Use only the first N training images.")
@click.option("--images", default=None, metavar="DIR",
              help="Train on every colour image under DIR (recursive) instead of CIFAR-10.")
@click.option("--image-size", type=click.IntRange(8), default=None, metavar="N",
              help="Square crop side for --images (multiple of 8) [default: 128].")
@click.option("--val-images", default=None, metavar="DIR", help="Validation folder for --images.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Seeded fraction of --images held out when there is no --val-images.")
@click.option("--workers", type=click.IntRange(0), default=4, show_default=True,
              help="DataLoader worker processes decoding --images (per training process).")
@click.option("--shift", type=click.IntRange(0, 8), default=0, show_default=True, metavar="N",
              help="CIFAR-10 augmentation: random translations of up to N pixels (mirrored borders).")
@click.option("--zoom", type=click.FloatRange(0, 1), default=0.0, show_default=True, metavar="Z",
              help="CIFAR-10 augmentation: random zooms in by a factor of 1 to 1+Z (bilinear, random position).")
@click.option("--contrast", type=click.FloatRange(0, 0.9), default=0.0, show_default=True, metavar="C",
              help="CIFAR-10 augmentation: each image's contrast scaled by a random 1-C to 1+C about its mean.")
@click.option("--final-fit", is_flag=True,
              help="CIFAR-10: train on all 50,000 training images (validation images included; use once the recipe "
                   "is chosen on the split).")
@click.option("--sync-bn", is_flag=True, help="SyncBatchNorm across processes under torchrun (CUDA only).")
@click.option("--out", default=None, metavar="DIR", help="Run folder (default runs/MODEL).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--stop-after", type=click.IntRange(1), default=None, metavar="N",
              help="Stop (resumably) after N epochs in this invocation.")
@DEVICE
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@DATA
@click.option("--model-config", default=None, metavar="JSON",
              help='Architecture options, e.g. \'{"widths": [24, 48, 96, 192]}\'.')
@click.option("--list", "list_models", is_flag=True, help="List the registered architectures and exit.")
def train(model, epochs, batch_size, lr, weight_decay, max_images, images, image_size, val_images, val_fraction,
          workers, shift, zoom, contrast, final_fit, sync_bn, out, resume, stop_after, device, precision, seed, data,
          model_config, list_models) -> None:
    """Train a colorizer on CIFAR-10 or your own image folder; runs on many GPUs/machines under torchrun.

    Validation uses a held-out part of the training set (or --val-images). For several processes:
    torchrun --nproc-per-node=N -m autocolor train ... (see docs/training.md).
    """
    from autocolor.models import names, trainable
    from autocolor.train import TrainConfig
    from autocolor.train import train as run

    if list_models:
        click.echo("\n".join(n if trainable(n) else f"{n}  (not trained: assembled from trained runs, "
                                                        "scripts/ensemble.py)" for n in names()))
        return
    cfg = TrainConfig(model=model, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      max_images=max_images,
                      out=out or f"runs/{model}", resume=resume, device=device, precision=precision, seed=seed,
                      data=data, stop_after=stop_after, command=shlex.join(["autocolor", *sys.argv[1:]]),
                      images=_absolute(images), val_images=_absolute(val_images), val_fraction=val_fraction,
                      image_size=image_size,
                      workers=workers, sync_bn=sync_bn, shift=shift, zoom=zoom, contrast=contrast,
                      final_fit=final_fit,
                      model_config=_json_object(model_config, "--model-config"))
    if image_size and not images:
        raise AutocolorError("--image-size applies to --images folders (CIFAR-10 images are 32x32)")
    if val_images and not images:
        raise AutocolorError("--val-images needs --images DIR")
    for flag, value in (("--shift", shift), ("--zoom", zoom), ("--contrast", contrast)):
        if value and images:
            raise AutocolorError(f"{flag} applies to CIFAR-10 (--images folders get random crops only)")
    if final_fit and images:
        raise AutocolorError("--final-fit applies to CIFAR-10 (a folder's validation split is --val-images)")
    run(cfg, log=click.echo)


def _absolute(path: str | None) -> str | None:
    """A folder option as an absolute path, so ``--resume`` from another directory compares the same folder."""
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _check_output(output: str, suffix: str, overwrite: bool) -> None:
    """A command's one output file: the right suffix, not a folder, and not replaced without ``--overwrite``."""
    from pathlib import Path

    path = Path(output).expanduser()
    if path.suffix.lower() != suffix:
        raise AutocolorError(f"-o {output}: the file is written as {suffix[1:].upper()}; give a {suffix} name")
    if path.is_dir():
        raise AutocolorError(f"-o {output}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise AutocolorError(f"-o {output}: already exists (use --overwrite to replace it)")


def _json_object(text: str | None, flag: str) -> dict:
    """Parse a JSON object option; bad JSON is a user error."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AutocolorError(f"{flag}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise AutocolorError(f"{flag}: expected a JSON object like '{{\"key\": value}}'")
    return value


@cli.command()
@click.option("--model", "model", default="default", show_default=True, metavar="NAME|RUN_DIR|FILE")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--max-images", type=click.IntRange(1), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--grid", default=None, metavar="FILE.png",
              help="Grid PNG of the first images, grey | colorized | original (default eval-NAME.png).")
@click.option("--no-grid", is_flag=True, help="Write no grid PNG.")
@DEVICE
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 where the CPU/GPU runs it natively, else fp32.")
@click.option("--saturation", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=None,
              help="Softmax temperature for classification models (e.g. vivid) [default: the card's].")
@click.option("--boost", type=click.FloatRange(0), default=None,
              help="Per-image colour boost strength of classification models (0 = off) [default: the card's].")
@click.option("--boost-max", type=click.FloatRange(1, 5), default=None, metavar="S",
              help="Cap on the boost's per-image chroma scale (1 = no boost, 5 = no cap) [default: the card's].")
@DATA
@click.option("--images", default=None, metavar="DIR",
              help="Score on the colour images under DIR (centre crops at the model's image size), not CIFAR-10.")
@click.option("--classifier", default=None, metavar="FILE.safetensors",
              help="Classifier for semantic accuracy instead of the bundled one (python -m autocolor.classifier "
                   "--split train makes one that has not seen the validation images).")
def evaluate(model, split, max_images, as_json, grid, no_grid, device, precision, saturation, temperature, boost,
             boost_max, data, images, classifier) -> None:
    """Score a trained model against the grey input (PSNR, SSIM, colourfulness, AuC)."""
    from pathlib import Path

    from autocolor.evaluate import evaluate as run
    from autocolor.nets import decoding_options

    if no_grid and grid:
        raise AutocolorError("--grid and --no-grid contradict each other")
    grid = None if no_grid else grid or f"eval-{Path(model).stem if Path(model).suffix else Path(model).name}.png"
    if grid and (Path(grid).suffix.lower() != ".png" or Path(grid).is_dir()):
        raise AutocolorError(f"--grid {grid}: give a .png file name (the grid is written as PNG)")
    if grid and (why := why_unwritable(Path(grid).expanduser())):  # found before scoring, not after it
        raise AutocolorError(f"--grid {grid}: {why} (or use --no-grid)")
    res = run(model, split=split, max_images=max_images, data=data, device=device, precision=precision,
              grid=grid, progress=not as_json, saturation=saturation, images=images, classifier=classifier,
              **decoding_options(temperature, boost, boost_max))
    if as_json:
        click.echo(json.dumps(res))
        return
    g = res["grey_baseline"]
    what = f"{res['image_size']}x{res['image_size']} crops of {images}" if images else f"{split} images"
    click.echo(f"{res['model']} on {res['n_images']} {what} (grey input in brackets)")
    for key in ("psnr", "ssim", "colorfulness", "delta_colorfulness", "auc"):
        click.echo(f"  {key:<20} {res[key]:>9.4f}   ({g[key]:.4f})")
    if "semantic_accuracy" in res:
        click.echo(f"  {'semantic_accuracy':<20} {res['semantic_accuracy']:>9.4f}   ({g['semantic_accuracy']:.4f}); "
                   f"originals {res['ground_truth']['semantic_accuracy']:.4f}, grey-to-colour gap closed "
                   + ("n/a" if res.get("semantic_gap_closed") is None else f"{res['semantic_gap_closed']:.1%}"))
    click.echo(f"  ground-truth colorfulness {res['ground_truth']['colorfulness']:.4f}"
               + (f"; grid: {res['grid']}" if res.get("grid") else ""))
    skipped = res.get("skipped") or {}
    if any(skipped.values()):
        click.echo(f"  skipped: {skipped.get('greyscale', 0)} greyscale, {skipped.get('unreadable', 0)} unreadable "
                   "file(s)")


@cli.command()
@click.option("--model", "model", default="seed", show_default=True, help="Architecture name.")
@click.option("-o", "--output", required=True, metavar="FILE.png")
@click.option("--overwrite", is_flag=True, help="Replace FILE.png if it exists.")
def diagram(model, output, overwrite) -> None:
    """Draw an architecture (a trainable name from `autocolor train --list`, or a bundled model's) from the module
    itself."""
    from autocolor.diagram import draw
    from autocolor.models import build, names
    from autocolor.weights import bundled_names, load_card, resolve

    _check_output(output, ".png", overwrite)
    arch, config = model, {}
    if model not in names() and model in bundled_names():  # e.g. default: the architecture its card names
        card = load_card(resolve(model))
        arch, config = card["architecture"], card.get("config", {})
    try:
        net = build(arch, **config)
    except (TypeError, ValueError) as exc:  # e.g. vivid-ensemble: assembled from runs, no architecture of its own
        raise AutocolorError(f"cannot draw {model}: {exc}") from None
    vivid, fidelity = list(getattr(net, "vivid", [])), list(getattr(net, "fidelity", []))
    if vivid:  # an ensemble: its networks stacked would be a picture tens of thousands of pixels tall
        click.echo(f"autocolor: note: {model} averages {len(vivid)} unet-vivid and {len(fidelity)} unet networks; "
                   "drawing one unet-vivid", err=True)
        net = vivid[0]
    click.echo(str(draw(net, output)))


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "--output", "outdir", required=True, metavar="OUTDIR",
              help="Folder for OUTDIR/<stem>.<format>.")
@click.option("--model", default="default", show_default=True, metavar="NAME|RUN_DIR|FILE")
@click.option("--saturation", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Chroma multiplier (0 = grey).")
@click.option("--size", type=click.IntRange(8), default=None, metavar="N",
              help="Long side of the working resolution the model sees, 8 to 2048 [default: the model card's "
                   "colorize_size, else 64].")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "webp"]), default="png", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--keep-folders", is_flag=True,
              help="Photos found in a folder argument keep their sub-folders under OUTDIR (default: all in OUTDIR).")
@DEVICE
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=None,
              help="Softmax temperature for classification models (e.g. vivid); ignored by others, with a note.")
@click.option("--boost", type=click.FloatRange(0), default=None,
              help="Per-image colour boost strength for classification models (0 = off) [default: the card's].")
@click.option("--boost-max", type=click.FloatRange(1, 5), default=None, metavar="S",
              help="Cap on the boost's per-image chroma scale (1 = no boost, 5 = no cap) [default: the card's].")
@click.option("--max-pixels", type=click.IntRange(1), default=None, metavar="N",
              help="Refuse images with more pixels (decompression bombs) [default: 64000000].")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="onnx: run --model FILE.onnx (made by `autocolor export`) with ONNX Runtime on the CPU.")
def colorize(inputs, outdir, model, saturation, size, fmt, overwrite, keep_folders, device, temperature, boost,
             boost_max, max_pixels, backend) -> None:
    """Colorize photos of any size: files, folders (recursive) or globs; inputs are never overwritten."""
    from pathlib import Path

    from tqdm.auto import tqdm

    from autocolor.batchpaths import expand_inputs, plan_outputs
    from autocolor.colorize import BatchError, Colorizer
    from autocolor.imageio import DEFAULT_MAX_PIXELS

    def say(prefix):
        return lambda msg: tqdm.write(f"autocolor: {prefix}: {msg}", file=sys.stderr)

    out = Path(outdir).expanduser()
    if out.exists() and not out.is_dir():
        raise AutocolorError(f"-o {out}: exists and is not a folder")
    subfolders: dict | None = {} if keep_folders else None
    files, missing = expand_inputs(list(inputs), exclude=out, subfolders=subfolders)
    for msg in missing:
        say("error")(msg)
    if not files:
        inside = [a for a in inputs if Path(a).expanduser().is_dir() and out.resolve().is_relative_to(
            Path(a).expanduser().resolve())]
        raise AutocolorError("no input images" + (f" ({len(missing)} argument(s) matched nothing)" if missing else "")
                             + (f"; images under -o {out} are outputs and are skipped" if inside else ""))
    settings = {"size": size, "saturation": saturation, "max_pixels": max_pixels or DEFAULT_MAX_PIXELS}
    if backend == "onnx":
        from autocolor.export import onnx_colorizer

        if not str(model).endswith(".onnx"):
            raise AutocolorError("--backend onnx needs --model FILE.onnx (make one with `autocolor export`)")
        if device not in ("auto", "cpu"):
            raise AutocolorError("--backend onnx runs on the CPU (ONNX Runtime): leave out --device")
        if temperature is not None or boost is not None or boost_max is not None:
            raise AutocolorError("--backend onnx has no --temperature, --boost or --boost-max (they are fixed in "
                                 "the exported graph)")
        col = onnx_colorizer(model, **settings)
    else:
        col = Colorizer.load(model, device=device, notice=say("note"), temperature=temperature, boost=boost,
                             boost_max=boost_max, **settings)
    out.mkdir(parents=True, exist_ok=True)
    written, errors = col.colorize_files(files, plan_outputs(files, out, fmt, subfolders), overwrite=overwrite,
                                         progress=sys.stderr.isatty(), report=say("error"), notice=say("note"),
                                         written_cb=lambda path: tqdm.write(str(path), file=sys.stdout))
    failed = len(errors) + len(missing)
    if failed:
        names = [e.split(": ", 1)[0] for e in missing] + [str(src) for src, _ in errors]
        raise BatchError(f"{failed} of {len(files) + len(missing)} input(s) failed ({len(written)} written): "
                         + ", ".join(names))


@cli.command()
@click.option("--model", "model", default="default", show_default=True, metavar="NAME|RUN_DIR|FILE")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("-o", "--output", required=True, metavar="FILE.onnx")
@click.option("--size", type=click.IntRange(8), default=32, show_default=True,
              help="Side of the example input used for tracing (multiple of 8); batch, height and width stay dynamic.")
@click.option("--opset", type=click.IntRange(17), default=17, show_default=True,
              help="ONNX opset, 17 up to the newest this torch exports.")
@click.option("--overwrite", is_flag=True, help="Replace FILE.onnx if it exists.")
def export(model, fmt, output, size, opset, overwrite) -> None:
    """Export a trained model's chroma path (L*/100 -> a*b*, or raw RGB for RGB models) to ONNX."""
    from autocolor.colorize import resolve_model
    from autocolor.export import export_onnx
    from autocolor.weights import load_model

    _check_output(output, ".onnx", overwrite)
    net, card = load_model(resolve_model(model, lambda msg: click.echo(f"autocolor: note: {msg}", err=True)),
                           fuse=True)  # BatchNorm folded: fewer nodes in the graph, same outputs
    path = export_onnx(net, output, size=size, opset=opset, card=card)
    click.echo(f"{path}: {fmt}, opset {opset}, input L (N, 1, H, W) = L*/100, output "
               f"{'rgb (raw sRGB in [0, 1])' if net.output == 'rgb' else 'ab (a*b* in Lab units)'}")


@cli.command()
@click.option("-o", "--output", default="demo.png", show_default=True, metavar="FILE.png",
              help="The sheet (PNG); the demo's own output, so it is replaced when it exists.")
@click.option("--model", default="default", show_default=True, metavar="NAME|RUN_DIR|FILE")
@DEVICE
def demo(output, model, device) -> None:
    """Colorize the bundled sample photos; write one sheet (grey | colorized | original) and print its path."""
    from autocolor.colorize import make_sheet

    _check_output(output, ".png", overwrite=True)

    click.echo(str(make_sheet(output, model=model, device=device,
                              notice=lambda m: click.echo(f"autocolor: note: {m}", err=True))))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(0, min_open=True), default=20.0, show_default=True)
@click.option("--max-pixels", type=click.IntRange(1), default=None, metavar="N",
              help="Refuse uploads with more pixels [default: 64000000].")
@click.option("--model", "models", multiple=True, metavar="NAME|RUN_DIR|FILE",
              help="Models to offer (repeatable; default: the bundled ones).")
@click.option("--keep-mb", type=click.FloatRange(0, min_open=True), default=2000.0, show_default=True,
              help="Results kept for download: at most this many MB (the oldest go first), for at most an hour.")
@click.option("--auth-file", default=None, metavar="FILE",
              help="Ask for a login: FILE holds user:password lines (kept out of the command line and its history).")
@DEVICE
def serve(host, port, max_upload_mb, max_pixels, models, keep_mb, auth_file, device) -> None:
    """Run the web app (Gradio): upload a photo, pick a model and saturation, download the result."""
    try:
        from autocolor.app import build_app, launch, read_auth_file
    except ImportError as exc:
        raise AutocolorError(f"the web app needs gradio: pip install 'autocolor[web]' ({exc})") from None
    from autocolor.imageio import DEFAULT_MAX_PIXELS

    auth = read_auth_file(auth_file) if auth_file else None
    if host not in ("127.0.0.1", "localhost", "::1") and not auth:
        click.echo(f"autocolor: warning: serving on {host}: anyone who can reach this machine can use the app (no "
                   "login: see --auth-file); keep --max-pixels and --max-upload-mb low", err=True)
    app = build_app(models=list(models) or None, max_upload_mb=max_upload_mb,
                    max_pixels=max_pixels or DEFAULT_MAX_PIXELS, device=device, keep_mb=keep_mb)
    launch(app, host=host, port=port, max_upload_mb=max_upload_mb, auth=auth)


def _error(exc: BaseException, text: str) -> None:
    """Print one error line (under torchrun, once: see ``errors.error_prefix``)."""
    prefix = error_prefix(exc)
    if prefix is not None:
        click.echo(prefix + text, err=True)


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; 8.1 prints the help itself


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one-line messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="autocolor", standalone_mode=False)
    except _NO_ARGS as exc:  # bare `autocolor`: the help, not an error line
        click.echo(exc.format_message(), err=True)
        return 2
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""  # path starts with 'autocolor'
        _error(exc, f"{exc.format_message()}{hint}")
        return 2
    except click.exceptions.Abort:
        click.echo("autocolor: aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt as exc:
        if error_prefix(exc) is not None:  # under torchrun every rank gets the Ctrl-C: rank 0 says so
            click.echo("autocolor: interrupted", err=True)
        return 130
    except AutocolorError as exc:
        _error(exc, str(exc))
        return getattr(exc, "exit_code", 1)
    except click.ClickException as exc:
        _error(exc, exc.format_message())
        return exc.exit_code
    except OSError as exc:  # e.g. an output path under a file, a full disk: one line, not a traceback
        _error(exc, str(exc))
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

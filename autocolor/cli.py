"""The ``autocolor`` command (click). User errors print one line and exit non-zero, never a traceback."""

from __future__ import annotations

import json
import shlex
import sys

import click

from autocolor.errors import AutocolorError

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
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True)
@click.option("--max-images", type=click.IntRange(1), default=None, help="Use only the first N training images.")
@click.option("--out", default=None, metavar="DIR", help="Run folder (default runs/MODEL).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--stop-after", type=click.IntRange(1), default=None, metavar="N",
              help="Stop (resumably) after N epochs in this invocation.")
@DEVICE
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@DATA
@click.option("--list", "list_models", is_flag=True, help="List the registered architectures and exit.")
def train(model, epochs, batch_size, lr, max_images, out, resume, stop_after, device, precision, seed, data,
          list_models) -> None:
    """Train a colorizer on CIFAR-10 (validation on a held-out part of the training set)."""
    from autocolor.models import names
    from autocolor.train import TrainConfig
    from autocolor.train import train as run

    if list_models:
        click.echo("\n".join(names()))
        return
    cfg = TrainConfig(model=model, epochs=epochs, batch_size=batch_size, lr=lr, max_images=max_images,
                      out=out or f"runs/{model}", resume=resume, device=device, precision=precision, seed=seed,
                      data=data, stop_after=stop_after, command=shlex.join(["autocolor", *sys.argv[1:]]))
    run(cfg, log=click.echo)


@cli.command()
@click.option("--model", "model", default="default", show_default=True, metavar="NAME|RUN_DIR|FILE")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--max-images", type=click.IntRange(1), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--grid", default=None, metavar="FILE.png", help="Grid PNG path (default eval-NAME.png).")
@DEVICE
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--saturation", type=click.FloatRange(0), default=1.0, show_default=True)
@DATA
def evaluate(model, split, max_images, as_json, grid, device, precision, saturation, data) -> None:
    """Score a trained model against the grey input (PSNR, SSIM, colourfulness, AuC)."""
    from pathlib import Path

    from autocolor.evaluate import evaluate as run

    grid = grid or f"eval-{Path(model).stem if Path(model).suffix else Path(model).name}.png"
    res = run(model, split=split, max_images=max_images, data=data, device=device, precision=precision,
              grid=grid, progress=not as_json, saturation=saturation)
    if as_json:
        click.echo(json.dumps(res))
        return
    g = res["grey_baseline"]
    click.echo(f"{res['model']} on {res['n_images']} {split} images (grey input in brackets)")
    for key in ("psnr", "ssim", "colorfulness", "delta_colorfulness", "auc"):
        click.echo(f"  {key:<20} {res[key]:>9.4f}   ({g[key]:.4f})")
    click.echo(f"  ground-truth colorfulness {res['ground_truth']['colorfulness']:.4f}; grid: {res['grid']}")


@cli.command()
@click.option("--model", "model", default="seed", show_default=True, help="Architecture name.")
@click.option("-o", "--output", required=True, metavar="FILE.png")
def diagram(model, output) -> None:
    """Draw an architecture from the module itself."""
    from autocolor.diagram import draw
    from autocolor.models import build

    click.echo(str(draw(build(model), output)))


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "outdir", required=True, metavar="OUTDIR")
@click.option("--model", default="default", show_default=True)
def colorize(inputs, outdir, model) -> None:
    """Colorize greyscale photos of any size."""
    raise AutocolorError("colorize is not available yet")


@cli.command()
def demo() -> None:
    """Colorize the bundled sample photos with the bundled default model."""
    raise AutocolorError("demo is not available yet")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one-line messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="autocolor", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see 'autocolor {exc.ctx.command_path.split(' ', 1)[-1]} --help')" if exc.ctx else ""
        click.echo(f"autocolor: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("autocolor: aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("autocolor: interrupted", err=True)
        return 130
    except AutocolorError as exc:
        click.echo(f"autocolor: error: {exc}", err=True)
        code = getattr(exc, "exit_code", 1)
        return code
    except click.ClickException as exc:
        click.echo(f"autocolor: error: {exc.format_message()}", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

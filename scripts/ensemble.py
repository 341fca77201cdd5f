"""Assemble a ``vivid-ensemble`` model from trained runs (no training): weights + a card naming every member.

Usage: python scripts/ensemble.py OUT.safetensors --vivid RUN [RUN ...] [--fidelity RUN ...]
       [--fidelity-weight W] [--temperature T] [--boost B] [--half]
RUN: a run folder, a .safetensors file or a bundled name. The card keeps each member's card (its training
command, data, seconds and validation metrics); its ``training.seconds`` is the members' sum. --half stores
the weights as float16 (``autocolor.weights.half_state``). Choose the decoding afterwards with
``benchmarks/tune_vivid.py OUT --write``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from autocolor.errors import AutocolorError, run_main
from autocolor.models import build
from autocolor.weights import load_card, load_model, resolve, save_model

ROLES = (("vivid", "unet-vivid"), ("fidelity", "unet"))


def assemble(out: str, vivid: list[str], fidelity: list[str] | None = None, fidelity_weight: float = 0.0,
             temperature: float = 1.0, boost: float = 0.0, half: bool = False, command: str = "") -> Path:
    runs = {"vivid": list(vivid), "fidelity": list(fidelity or [])}
    members, configs = [], {}
    for role, arch in ROLES:
        configs[role] = []
        for spec in runs[role]:
            card = load_card(resolve(spec))
            if card["architecture"] != arch:
                raise AutocolorError(f"{spec}: a {role} member must be {arch}, not {card['architecture']}")
            configs[role].append(card["config"])
            members.append({"role": role, "source": str(spec), **card})
    model = build("vivid-ensemble", vivid=configs["vivid"], fidelity=configs["fidelity"],
                  fidelity_weight=fidelity_weight, temperature=temperature, boost=boost)
    for role, _ in ROLES:
        for net, spec in zip(getattr(model, role), runs[role], strict=True):
            net.load_state_dict(load_model(spec)[0].state_dict())
    data = {m["training"]["data"] for m in members}
    card = {"name": Path(out).stem, "metrics": {},
            "training": {"command": command, "data": data.pop() if len(data) == 1 else sorted(data),
                         "seconds": round(sum(m["training"]["seconds"] for m in members), 1),
                         "seconds_note": "the members' training seconds, summed (each card in members)",
                         "machine": sorted({m["training"]["machine"] for m in members})},
            "image_size": max(m.get("image_size", 32) for m in members), "members": members}
    return save_model(model.eval(), Path(out), card, half=half)


def _number(low: float, high: float = float("inf"), low_open: bool = False):
    """An argparse type: a finite float in [low, high] ((low, high] with ``low_open``), as the CLI's options take."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            where = f"{'(' if low_open else '['}{low:g}, {high:g}]" if high != float("inf") else (
                f"{'>' if low_open else '>='} {low:g}")
            raise argparse.ArgumentTypeError(f"{text} is not {'in ' if high != float('inf') else ''}{where}")
        return value

    return parse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--vivid", nargs="+", required=True, metavar="RUN")
    ap.add_argument("--fidelity", nargs="*", default=[], metavar="RUN")
    ap.add_argument("--fidelity-weight", type=_number(0, 1), default=0.0,
                    help="weight of the fidelity members' a*b* in the decoded mean, 0 to 1 [default: 0]")
    ap.add_argument("--temperature", type=_number(0, low_open=True), default=1.0,
                    help="softmax temperature, > 0 [default: 1]")
    ap.add_argument("--boost", type=_number(0), default=0.0, help="colour boost strength, >= 0 (0 = off) [default: 0]")
    ap.add_argument("--half", action="store_true")
    args = ap.parse_args()
    if args.fidelity_weight > 0 and not args.fidelity:
        ap.error("--fidelity-weight above 0 needs --fidelity members")
    command = shlex.join(["python", "scripts/ensemble.py", *sys.argv[1:]])
    print(assemble(args.out, args.vivid, args.fidelity, args.fidelity_weight, args.temperature, args.boost,
                   args.half, command))


if __name__ == "__main__":
    run_main(main)

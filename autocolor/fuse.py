"""Fold BatchNorm into the convolution before it, for inference.

In eval mode BatchNorm2d is a per-channel affine map, so ``Conv -> BN`` equals one convolution with scaled
weights and a shifted bias. ``fuse_for_inference`` rewrites every ``Conv2d``/``ConvTranspose2d`` that is
directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential`` (how ``seed`` and ``unet`` build their
blocks) and puts ``nn.Identity`` where the BN was, so indices and the model's own methods stay as they were.
A ``ReLU`` directly followed by a ``MaxPool2d`` is swapped: pooling then ReLU gives exactly the same values
(ReLU is monotonic) with the ReLU on the pooled, 4x smaller tensor (bf16 ReLU is a slow pass on CPU).
The result is for inference only: it has no BatchNorm to train and its state_dict no longer fits the
architecture, so ``weights.save_model`` refuses it.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

FUSED_ATTR = "fused_for_inference"  # set to True on models returned by fuse_for_inference


def _fold_pairs(seq: nn.Sequential) -> None:
    """Fold each (conv, BatchNorm2d) pair of ``seq``'s direct children in place."""
    names = list(seq._modules)
    for first, second in zip(names[:-1], names[1:], strict=True):
        conv, bn = seq._modules[first], seq._modules[second]
        if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and type(bn) is nn.BatchNorm2d):
            continue
        transpose = isinstance(conv, nn.ConvTranspose2d)
        if bn.running_mean is None or bn.running_var is None or (transpose and conv.groups != 1):
            continue  # batch statistics at inference, or a grouped transposed conv: leave as is
        seq._modules[first] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
        seq._modules[second] = nn.Identity()


def _pool_before_relu(seq: nn.Sequential) -> None:
    """Swap each (ReLU, MaxPool2d) pair of ``seq``'s direct children in place (exact; less ReLU work)."""
    names = list(seq._modules)
    for first, second in zip(names[:-1], names[1:], strict=True):
        relu, pool = seq._modules[first], seq._modules[second]
        if type(relu) is nn.ReLU and type(pool) is nn.MaxPool2d and not pool.return_indices:
            seq._modules[first], seq._modules[second] = pool, relu


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every Conv -> BatchNorm2d pair in an ``nn.Sequential`` folded.

    Also pools before ReLU where a ReLU feeds a MaxPool2d (exact). The original model and its state_dict are
    left untouched. Outputs equal the eval-mode model's up to float rounding (about 1e-6 relative in fp32).
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        if isinstance(module, nn.Sequential):
            _fold_pairs(module)
            _pool_before_relu(module)
    setattr(fused, FUSED_ATTR, True)
    return fused


def is_fused(model: nn.Module) -> bool:
    """True for a model returned by ``fuse_for_inference``."""
    return bool(getattr(model, FUSED_ATTR, False))

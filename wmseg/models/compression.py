"""Pruning the network: which convs, on what schedule, channel removal with Torch-Pruning,
and the record of a pruned network's shapes that rebuilds it from a checkpoint. No Lightning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# The segmentation head's one output channel is the mask: never pruned.
HEAD = "unet.segmentation_head"
# The encoder's first conv: its input is the image and its output feeds the first skip.
STEM_NAMES = ("unet.encoder.conv_stem", "unet.encoder.conv1", "unet.encoder.stem")


@dataclass(frozen=True)
class PruneSchedule:
    """The pruned share over training: 0 until `start`, `amount` from `end` on, between
    them cubic (`1 - (1 - progress)^3`, most cut early) or linear; pruned every `every`
    steps (or epochs, with `unit: epochs`). `end: null` prunes all at once at `start`."""

    start: int = 0
    end: int | None = None
    every: int = 1
    shape: str = "cubic"
    unit: str = "steps"

    def __post_init__(self) -> None:
        if self.unit not in ("steps", "epochs"):
            raise ValueError(f"schedule.unit={self.unit!r}: use steps or epochs")
        if self.shape not in ("cubic", "linear"):
            raise ValueError(f"schedule.shape={self.shape!r}: use cubic or linear")
        if self.start < 0 or self.every < 1 or (self.end is not None and self.end <= self.start):
            raise ValueError(
                f"schedule start={self.start}, end={self.end}, every={self.every}: need start >= 0, "
                "end > start (or null: all at once) and every >= 1"
            )

    def due(self, t: int) -> bool:
        """Whether to prune at step (or epoch) `t`: at `start`, then every `every` until `end`."""
        if self.end is None:
            return t == self.start
        return self.start <= t <= self.end and ((t - self.start) % self.every == 0 or t == self.end)

    def share(self, t: int, amount: float) -> float:
        """The share pruned by step (or epoch) `t`."""
        if t < self.start:
            return 0.0
        if self.end is None or t >= self.end:
            return amount
        progress = (t - self.start) / (self.end - self.start)
        return amount * (1 - (1 - progress) ** 3 if self.shape == "cubic" else progress)


def prunable_convs(net: nn.Module) -> Iterator[tuple[str, nn.Conv2d]]:
    """The network's convolutions other than the segmentation head's."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d) and not (name == HEAD or name.startswith(HEAD + ".")):
            yield name, module


def conv_sparsity(net: nn.Module) -> tuple[dict[str, float], float]:
    """The share of zero weights per prunable conv ({name: share}) and over all of them."""
    shares, zeros, total = {}, 0, 0
    for name, conv in prunable_convs(net):
        weight = conv.weight.detach()  # with a pruning mask applied, the masked weight
        z, n = int((weight == 0).sum()), weight.numel()
        shares[name], zeros, total = z / n, zeros + z, total + n
    return shares, zeros / max(total, 1)


def parameters_and_gflops(net: nn.Module, size: int = 512) -> tuple[int, float]:
    """Parameters and GFLOPs (2 x multiply-accumulates, counted by Torch-Pruning) of one
    `size` x `size` image."""
    import torch_pruning as tp

    param = next(net.parameters())
    example = torch.rand(1, 3, size, size, device=param.device, dtype=param.dtype)
    was_training = net.training
    net.eval()
    macs, params = tp.utils.count_ops_and_params(net, example)
    net.train(was_training)
    return int(params), 2 * float(macs) / 1e9


class ChannelPruner:
    """Removes channels from `net` in place: `ratio` of every prunable group's channels
    (or, with `global_pruning`, that share over the whole network, ranked together),
    reached over `iterations` calls of `step()`.

    Torch-Pruning traces the network and prunes coupled layers together: a conv, its
    BatchNorm, the depthwise conv after it, the encoder feature it becomes and the decoder
    block that takes that skip through its concatenation. Channels are ranked by the Ln
    norm (`norm`) of their group's weights; `round_to` keeps counts multiples of 8 (SIMD
    friendly). The stem and the segmentation head keep their channels. Pruning replaces
    parameters: an optimizer over the old ones must be rebuilt.
    """

    def __init__(
        self,
        net: nn.Module,
        ratio: float,
        iterations: int = 1,
        global_pruning: bool = False,
        round_to: int | None = 8,
        norm: int = 2,
        example_size: int = 64,
    ) -> None:
        import torch_pruning as tp

        if not 0.0 < ratio < 1.0:
            raise ValueError(f"channel pruning ratio must be within (0, 1), got {ratio}")
        if iterations < 1:
            raise ValueError(f"channel pruning iterations must be >= 1, got {iterations}")
        self.net, self.iterations, self.done = net, iterations, 0
        param = next(net.parameters())
        self.example = torch.rand(1, 3, example_size, example_size, device=param.device, dtype=param.dtype)
        ignored = [m for name, m in net.named_modules() if name == HEAD or name in STEM_NAMES]
        self.pruner = tp.pruner.BasePruner(
            net,
            self.example,
            importance=tp.importance.GroupMagnitudeImportance(p=norm),
            pruning_ratio=ratio,
            iterative_steps=iterations,
            global_pruning=global_pruning,
            ignored_layers=ignored,
            round_to=round_to,
        )

    def step(self) -> None:
        if self.done >= self.iterations:
            raise RuntimeError("channel pruning already reached its ratio")
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            self.pruner.step()
        self.net.train(was_training)
        self.done += 1


def prune_channels(net: nn.Module, ratio: float, **kwargs: Any) -> nn.Module:
    """`net` with `ratio` of its channels removed at once (see `ChannelPruner`), in place."""
    ChannelPruner(net, ratio, **kwargs).step()
    return net


# The checkpoint key of a network's channel counts.
ARCHITECTURE = "wmseg_architecture"

# What fixes a layer's shape, by kind: stored for every such layer of a checkpoint's
# network, so a channel-pruned one is rebuilt from plain data (Torch-Pruning's own
# serialisation pickles whole modules, which `weights_only` loading refuses).
_SHAPE_KEYS = {nn.Conv2d: ("in_channels", "out_channels", "groups"), nn.BatchNorm2d: ("num_features",)}


def _kind(module: nn.Module) -> type | None:
    return next((k for k in _SHAPE_KEYS if isinstance(module, k)), None)


def architecture(net: nn.Module) -> dict[str, dict[str, int]]:
    """The channel counts of every conv and BatchNorm of `net`: {layer: {key: value}}."""
    return {
        name: {key: int(getattr(module, key)) for key in _SHAPE_KEYS[kind]}
        for name, module in net.named_modules()
        if (kind := _kind(module)) is not None
    }


def check_architecture(arch: object, source: str) -> dict[str, dict[str, int]]:
    """`arch` if it is a stored architecture (plain names and whole numbers), else ValueError."""
    ok = isinstance(arch, dict) and all(
        isinstance(name, str)
        and isinstance(shape, dict)
        and all(isinstance(k, str) and type(v) is int and v > 0 for k, v in shape.items())
        for name, shape in arch.items()
    )
    if not ok:
        raise ValueError(f"{source}: the stored architecture is not a map of layer names to channel counts")
    return arch  # type: ignore[return-value]


def apply_architecture(
    net: nn.Module, arch: dict[str, dict[str, int]], source: str = "checkpoint"
) -> nn.Module:
    """Reshape the layers of `net` (built from its config) to the channel counts of
    `arch`, in place, with uninitialised tensors for a state dict to fill."""
    for name, shape in arch.items():
        try:
            module = net.get_submodule(name)
        except AttributeError as err:
            raise ValueError(
                f"{source}: the stored architecture names {name}, which the network lacks"
            ) from err
        kind = _kind(module)
        if kind is None or set(shape) != set(_SHAPE_KEYS[kind]):
            raise ValueError(f"{source}: the stored architecture's {name} does not match its layer")
        if all(getattr(module, k) == v for k, v in shape.items()):
            continue
        for key, value in shape.items():
            setattr(module, key, value)
        like = {"device": module.weight.device, "dtype": module.weight.dtype}
        if kind is nn.Conv2d:
            out, groups = shape["out_channels"], shape["groups"]
            module.weight = nn.Parameter(
                torch.empty(out, shape["in_channels"] // groups, *module.kernel_size, **like)
            )
            if module.bias is not None:
                module.bias = nn.Parameter(torch.empty(out, **like))
        else:
            n = shape["num_features"]
            if module.affine:
                module.weight, module.bias = (
                    nn.Parameter(torch.empty(n, **like)),
                    nn.Parameter(torch.empty(n, **like)),
                )
            if module.track_running_stats:
                module.running_mean, module.running_var = torch.zeros(n, **like), torch.ones(n, **like)
    return net

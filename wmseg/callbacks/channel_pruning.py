"""Channel pruning during training: a smaller network, not only a sparser one."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging

from wmseg.models.compression import ChannelPruner, parameters_and_gflops

log = logging.getLogger(__name__)


class ChannelPruning(L.Callback):
    """Removes channels from the network with Torch-Pruning (`wmseg.models.compression`):
    zeroed weights give ONNX Runtime no speed, fewer channels do.

    `ratio` of each layer group's channels (or of the whole network's with
    `global_pruning`), in `iterations` equal cuts: the first at `start` (step 0: before
    the first step, on the weights the run starts from, e.g. `ckpt_from=`), then every
    `every` training steps, the run fine-tuning between cuts. After each cut the
    optimizer and its schedule are rebuilt on the new parameters (the schedule keeps its
    place). Checkpoints store the pruned channel counts beside the weights
    (`wmseg_architecture`, plain data), so evaluate, export and predict rebuild the
    smaller network with `weights_only` loading. Logged: `prune/params` and
    `prune/gflops` (one `gflops_size` image) before (`.../before`) and after each cut.

    Under DDP only one cut at step 0 is possible: DDP's wrapper cannot follow parameters
    that change shape mid-run.
    """

    def __init__(
        self,
        ratio: float = 0.3,
        global_pruning: bool = False,
        iterations: int = 1,
        start: int = 0,
        every: int = 100,
        round_to: int | None = 8,
        gflops_size: int = 512,
    ) -> None:
        if iterations < 1 or every < 1 or start < 0:
            raise ValueError(
                f"callbacks.channel_pruning: iterations={iterations}, every={every}, start={start}: "
                "need iterations >= 1, every >= 1, start >= 0"
            )
        self.ratio, self.global_pruning, self.round_to = ratio, global_pruning, round_to
        self.iterations, self.start, self.every, self.gflops_size = iterations, start, every, gflops_size
        self._pruner: ChannelPruner | None = None
        self._sizes: dict[str, float] = {}
        self._logged: dict[str, float] = {}

    def _cut_steps(self) -> list[int]:
        return [self.start + k * self.every for k in range(self.iterations)]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self._pruner is not None:
            return
        # An average of the weights made before the cut would keep the old shapes.
        averaging = [c for c in trainer.callbacks if isinstance(c, WeightAveraging)]
        if averaging and trainer.callbacks.index(averaging[0]) < trainer.callbacks.index(self):
            raise ValueError(
                "callbacks: channel_pruning must come before ema (weight averaging copies the "
                "network when set up), e.g. callbacks=[default,channel_pruning,ema]"
            )
        if trainer.world_size > 1 and self._cut_steps() != [0]:
            raise ValueError(
                "callbacks.channel_pruning under DDP: prune once at step 0 (iterations=1, start=0); "
                "DDP cannot follow parameters that change shape during the run"
            )
        if trainer.ckpt_path:
            # A resumed run: the module loads the checkpoint's pruned architecture with its
            # weights. Cuts still due are not made: the pruner's trace is of this run's start.
            log.warning("channel pruning: resumed from %s, no further cuts are made", trainer.ckpt_path)
            return
        params, gflops = parameters_and_gflops(pl_module.net, self.gflops_size)
        self._sizes = {"prune/params/before": params, "prune/gflops/before": gflops}
        self._pruner = ChannelPruner(
            pl_module.net,
            self.ratio,
            iterations=self.iterations,
            global_pruning=self.global_pruning,
            round_to=self.round_to,
        )
        if self.start == 0:
            self._cut(pl_module)  # before the optimizer exists: nothing to rebuild

    def _cut(self, pl_module: L.LightningModule) -> None:
        assert self._pruner is not None
        self._pruner.step()
        params, gflops = parameters_and_gflops(pl_module.net, self.gflops_size)
        self._sizes |= {"prune/params": params, "prune/gflops": gflops}
        log.info(
            "channel pruning %d/%d: %d -> %d parameters, %.2f -> %.2f GFLOPs at %d px",
            self._pruner.done,
            self.iterations,
            self._sizes["prune/params/before"],
            params,
            self._sizes["prune/gflops/before"],
            gflops,
            self.gflops_size,
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        pruner = self._pruner
        if pruner is not None and step > 0 and step in self._cut_steps() and pruner.done < self.iterations:
            self._cut(pl_module)
            # New parameters: a new optimizer over them, its schedule moved on to this step.
            trainer.strategy.setup_optimizers(trainer)
            for config in trainer.lr_scheduler_configs:
                for _ in range(step):
                    config.scheduler.step()
        if self._logged != self._sizes:
            for name, value in self._sizes.items():
                pl_module.log(name, float(value), on_step=True, on_epoch=False, rank_zero_only=True)
            self._logged = dict(self._sizes)

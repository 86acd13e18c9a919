"""The console scripts `wmseg-train`, `wmseg-evaluate`, `wmseg-export`, `wmseg-predict`, `wmseg-serve`:
the root scripts' tasks, with the same configs and overrides."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def config_dir() -> Path:
    """The `conf/` folder: packaged inside wmseg, or the source checkout's (pip install -e .)."""
    for candidate in (Path(__file__).parent / "conf", Path(__file__).resolve().parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    sys.exit("wmseg: no conf/ folder found: install wmseg from its source checkout (pip install -e .)")


def _main(config_name: str, task: str, folder: str = "") -> Callable[[], None]:
    def main() -> None:
        import hydra

        if folder == "predict":  # prediction and serving: nothing of training is loaded
            from wmseg.predict.run_dir import register_predict_resolvers

            register_predict_resolvers()
        else:
            import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before Hydra composes)

        @hydra.main(version_base="1.3", config_path=str(config_dir() / folder), config_name=config_name)
        def run(cfg) -> object:
            from wmseg.tasks.report_errors import run_task

            module, name = task.rsplit(":", 1)
            return run_task(getattr(import_module(module), name), cfg)

        run()

    return main


train = _main("train", "wmseg.tasks.train:train")
evaluate = _main("evaluate", "wmseg.tasks.evaluate:evaluate")
export = _main("export", "wmseg.tasks.export:export")
# Its own folder: `model=` names a file there, not the training configs' model group.
predict = _main("predict", "wmseg.predict.cli:predict", "predict")
serve = _main("serve", "wmseg.serve.cli:serve", "predict")

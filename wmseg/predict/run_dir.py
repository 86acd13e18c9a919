"""Where `wmseg-predict` keeps its log (Hydra's run folder), as the resolver
`predict_run_dir` the predict config names. No Lightning, nothing of training."""

from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf import OmegaConf


def predict_run_dir(output: object, input: object) -> str:
    """Hydra's run folder for `wmseg-predict` (its predict.log): the output folder when the
    input exists and the folder can be made; else a fresh temporary folder, so that a run
    refused for a missing input or an unusable output (an existing file, /proc/x) creates
    nothing there and the task itself names the problem in one line."""
    if output is not None and input is not None and Path(str(input)).expanduser().exists():
        out = Path(str(output)).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
            return str(out)
        except OSError:
            pass
    # One folder for every refused run, not a new one each time.
    refused = Path(tempfile.gettempdir()) / "wmseg-predict"
    refused.mkdir(exist_ok=True)
    return str(refused)


def register_predict_resolvers() -> None:
    if not OmegaConf.has_resolver("predict_run_dir"):
        OmegaConf.register_new_resolver("predict_run_dir", predict_run_dir, use_cache=True)

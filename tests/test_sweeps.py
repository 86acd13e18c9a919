"""The W&B sweep file drives train.py the way `wandb agent` does (W&B offline, no server)."""

import json
import struct
from pathlib import Path

import pytest
import yaml
from wandb.proto import wandb_internal_pb2
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args, load_sweep_config

from tests.conftest import ROOT, run_script
from tests.test_scripts import TINY_CLI

SWEEP = ROOT / "experiments" / "sweeps" / "wandb_lite0.yaml"


def agent_command(sweep: dict, args: dict) -> list[str]:
    """The command list `wandb agent` builds for one run (wandb_agent.py, program mode)."""
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in args.items()}})
    sweep_vars |= {"interpreter": ["python"], "program": [sweep["program"]], "env": []}
    command: list[str] = []
    for chunk in create_sweep_command(list(sweep["command"])):
        chunk = str(chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            command += sweep_vars.get(chunk[2:-1]) or []
        else:
            command.append(chunk)
    return command


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Records of an offline run's .wandb file (W&B's LevelDB-style log: a 7-byte file
    header, 32 KiB blocks, each chunk = crc32, length, type; types 1 full / 4 last end a
    record). wandb 0.31 writes offline runs only there and ships no Python reader."""
    data, pos, chunk, records = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer padding
            pos += 32768 - pos % 32768
            continue
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(chunk))
            chunk = b""
    return records


def test_sweep_metric_is_the_monitored_one():
    sweep = load_sweep_config(str(SWEEP))
    train_cfg = yaml.safe_load((ROOT / "conf" / "train.yaml").read_text())
    assert sweep["metric"] == {"name": train_cfg["monitor"], "goal": "maximize"}
    assert (ROOT / sweep["program"]).is_file()


@pytest.mark.slow
def test_sweep_run_trains_with_the_sampled_values(tmp_path):
    sweep = load_sweep_config(str(SWEEP))
    # One point of the search space, as the sweep server would send it.
    point = {
        k: spec["values"][-1] if "values" in spec else spec["max"] for k, spec in sweep["parameters"].items()
    }
    command = agent_command(sweep, point)
    assert command[:2] == ["python", "train.py"]
    tiny = [x for x in TINY_CLI if not x.startswith("data.batch_size")]
    out = run_script(
        [*command[1:], "debug=limit", *tiny, f"hydra.run.dir={tmp_path}/run"], tmp_path, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]

    # WANDB_MODE=offline (conftest) keeps it local: one offline run with the sampled values,
    # and the summary the sweep ranks by is the best val/iou, as train.py printed it.
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/*.wandb")
    records = wandb_records(run_file)
    config = {
        item.key: json.loads(item.value_json)
        for r in records
        if r.HasField("config")
        for item in r.config.update
    }
    assert config["model"]["optimizer"]["lr"] == pytest.approx(point["model.optimizer.lr"])
    assert config["data"]["batch_size"] == point["data.batch_size"]
    summaries = [
        json.loads(item.value_json)
        for r in records
        if r.HasField("summary")
        for item in r.summary.update
        if (item.key or "/".join(item.nested_key)) == "val/iou"
    ]
    best = float(next(x for x in out.stdout.splitlines() if x.startswith("Best val/iou: ")).split()[-1])
    assert summaries[-1]["max"] == pytest.approx(best, abs=1e-4)


def test_optuna_and_wandb_sweeps_draw_the_same_space() -> None:
    """Both sweeps search the same keys from the same distributions, parsed by the
    sweepers' own code (Hydra's override grammar for Optuna, W&B's config for W&B)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution, UniformDistribution

    optuna_params = yaml.safe_load((ROOT / "conf/hparams_search/optuna.yaml").read_text())["hydra"][
        "sweeper"
    ]["params"]
    parser = OverridesParser.create()
    optuna_space = {
        key: create_optuna_distribution_from_override(parser.parse_override(f"{key}={value}"))
        for key, value in optuna_params.items()
    }
    wandb_space = load_sweep_config(str(ROOT / "experiments/sweeps/wandb_lite0.yaml"))["parameters"]
    assert set(optuna_space) == set(wandb_space)
    for key, spec in wandb_space.items():
        dist = optuna_space[key]
        if "values" in spec:
            assert isinstance(dist, CategoricalDistribution) and list(dist.choices) == spec["values"], key
            continue
        log = spec["distribution"] == "log_uniform_values"
        assert isinstance(dist, LogUniformDistribution if log else UniformDistribution), key
        assert (dist.low, dist.high) == (spec["min"], spec["max"]), key

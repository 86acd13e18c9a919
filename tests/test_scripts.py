"""The root scripts as a user runs them: real processes, real files, real signals."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT, run_script

TINY_CLI = [
    "data.synth.size=64",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.val_size=4",
    "data.test_size=4",
    "trainer.max_time=null",
    "callbacks.rich_progress_bar=null",
]


def test_unknown_override_is_named(tmp_path):
    out = run_script(["train.py", "trainer.no_such_key=1"], tmp_path, timeout=120)
    assert out.returncode != 0
    assert "no_such_key" in out.stderr and "+trainer.no_such_key" in out.stderr


def test_resolved_config_prints_checkpoint_names_of_the_monitored_metric(tmp_path):
    out = run_script(["train.py", "--cfg", "job", "--resolve", "monitor=val/best_f1"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "filename: step{step:06d}-best_f1{val/best_f1:.4f}" in out.stdout


def test_bad_value_message_names_key(tmp_path):
    out = run_script(["train.py", "model.optimizer.lr=-1", *TINY_CLI], tmp_path, timeout=120)
    assert out.returncode != 0
    assert "model.optimizer.lr must be a number > 0" in out.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_train_prints_best_checkpoint(tmp_path):
    out = run_script(["train.py", "debug=limit", *TINY_CLI, f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("Best checkpoint: "))
    best = Path(line.removeprefix("Best checkpoint: "))
    assert best.is_file() and best.parent == tmp_path / "run" / "checkpoints"
    score = float(next(x for x in out.stdout.splitlines() if x.startswith("Best val/iou: ")).split()[-1])
    assert 0.0 <= score <= 1.0


@pytest.mark.slow
def test_ddp_sim_two_processes(tmp_path):
    args = [
        "train.py",
        "trainer=ddp_sim",
        "debug=limit",
        *TINY_CLI,
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "callbacks=[default,ema]",
    ]
    out = run_script([*args, f"hydra.run.dir={tmp_path}/run"], tmp_path, timeout=400, start_new_session=True)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # 2 ranks x 4 images a batch: each rank sees half of the 6 limited batches' data per epoch.
    assert ckpt["global_step"] == 12
    # The EMA callback ran under DDP: averaged weights to load, raw ones to resume from.
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if averaged[k].is_floating_point())
    assert "distributed_backend=gloo" in out.stderr + out.stdout
    # Rank-0-only callbacks ran without deadlocking the ranks (this used to hang in validation).
    assert sorted(p.name for p in (tmp_path / "run").rglob("overlays/*.png")) == [
        "step_0000006.png",
        "step_0000012.png",
    ]


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_step_count(tmp_path):
    run1 = tmp_path / "run1"
    common = [
        *TINY_CLI,
        "data.train_size=4000",  # 1000 steps an epoch: the kill lands mid-epoch
        "trainer.val_check_interval=10",
        "trainer.max_steps=1000",
        "test=false",
    ]
    proc = subprocess.Popen(
        [sys.executable, "train.py", *common, f"hydra.run.dir={run1}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "WMSEG_ROOT": str(tmp_path)},
    )
    last = run1 / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
            if step >= 20:
                break
        time.sleep(1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step >= 20, "no checkpoint was written before the kill"
    killed_at = torch.load(last, map_location="cpu", weights_only=True)
    saved = killed_at["global_step"]
    assert saved >= step and killed_at["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 0

    run2 = tmp_path / "run2"
    out = run_script(
        [
            "train.py",
            *common,
            f"trainer.max_steps={saved + 20}",
            f"ckpt_path={last}",
            f"hydra.run.dir={run2}",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = torch.load(run2 / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == saved + 20
    steps = pd.read_csv(run2 / "csv" / "metrics.csv")["step"]
    assert steps.min() >= saved  # counting goes on from the checkpoint, not from 0

    # The killed part's curve survived (flushed every 10 steps) and the record joins both.
    assert pd.read_csv(run1 / "csv" / "metrics.csv")["step"].max() >= 9
    record_args = ["--name", "resumed", "--wall", "1", "--out", str(tmp_path / "records")]
    out = run_script(
        ["experiments/record_train_run.py", str(run1), str(run2), *record_args],
        tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "records" / "resumed.json").read_text())
    val_steps = record["val_curve"]["step"]
    assert val_steps == sorted(set(val_steps)) and val_steps[0] < saved <= val_steps[-1]
    assert record["steps"] == saved + 20
    assert record["monitor"] == "val/iou"
    assert any((d / "checkpoints" / record["best_checkpoint"]).is_file() for d in (run1, run2))
    assert record["resumed_with"][0].endswith(f"ckpt_path={last}")


@pytest.mark.slow
def test_optuna_sweep_runs_offline(tmp_path):
    out = run_script(
        [
            "train.py",
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "debug=limit",
            "trainer.max_epochs=1",
            *TINY_CLI,
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        tmp_path,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert "best_params" in results and "best_value" in results
    assert len(list((tmp_path / "sweep").glob("[0-9]/checkpoints/last.ckpt"))) == 2

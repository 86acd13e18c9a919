"""Pruning (zeroed weights, removed channels) and distillation: what the callbacks do to
the network, and that their checkpoints load, evaluate and export like any other."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import TINY, compose_config, run_script
from wmseg.export.onnx import contract_metadata, export_onnx
from wmseg.inference import OnnxPredictor, load_model
from wmseg.models import WatermarkUnet
from wmseg.models.compression import (
    ARCHITECTURE,
    HEAD,
    PruneSchedule,
    conv_sparsity,
    parameters_and_gflops,
    prunable_convs,
    prune_channels,
)
from wmseg.models.losses import BinaryDistillation
from wmseg.tasks.evaluate import evaluate
from wmseg.tasks.train import train

SMALL_NET = {"encoder_name": "resnet18", "decoder_channels": (32, 16, 8, 8, 8)}


def _train(tmp_path, *overrides: str) -> dict:
    cfg = compose_config(tmp_path, [*TINY, "debug=limit", "test=false", *overrides])
    try:
        return train(cfg)
    finally:
        GlobalHydra.instance().clear()


def _onnx_parity(net: torch.nn.Module, tmp_path, size: int = 64) -> float:
    meta = contract_metadata(0.5, int(net.stride), {"_target_": "wmseg.models.WatermarkUnet"})
    path = export_onnx(net, tmp_path / "model.onnx", meta, opset=17, sample_hw=(size, size), dynamic=True)
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = net(x).numpy()
    return float(np.abs(OnnxPredictor(path).logits(x.numpy()) - ref).max())


def _evaluates(ckpt, tmp_path) -> dict:
    cfg = compose_config(
        tmp_path / "eval", [f"ckpt={ckpt}", "split=val", "overlays=0"], config_name="evaluate"
    )
    try:
        return evaluate(cfg)["sets"]["synthetic_val"]
    finally:
        GlobalHydra.instance().clear()


def test_prune_schedule_is_cubic_and_reaches_its_amount():
    schedule = PruneSchedule(start=10, end=20, every=5)
    assert [t for t in range(30) if schedule.due(t)] == [10, 15, 20]
    assert schedule.share(5, 0.5) == 0.0 and schedule.share(20, 0.5) == schedule.share(99, 0.5) == 0.5
    assert schedule.share(15, 0.5) == pytest.approx(0.5 * (1 - 0.5**3))  # most is cut early
    assert [t for t in range(5) if PruneSchedule().due(t)] == [0]  # end=null: all at once at start
    with pytest.raises(ValueError, match="end > start"):
        PruneSchedule(start=5, end=5)


def test_unstructured_pruning_reaches_its_amount_on_the_convs_only(tmp_path):
    metrics = _train(
        tmp_path,
        "callbacks=[default,pruning]",
        "callbacks.pruning.amount=0.5",
        "callbacks.pruning.schedule.end=4",
        "callbacks.pruning.schedule.every=2",
    )
    ckpt = torch.load(metrics["best_model_path"], map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    assert not any(k.endswith(("_orig", "_mask")) for k in state)  # made permanent: plain keys
    loaded = load_model(metrics["best_model_path"])  # into a plain WatermarkUnet
    chosen = dict(prunable_convs(loaded.net))
    assert conv_sparsity(loaded.net)[1] == pytest.approx(0.5, abs=0.01)
    head = loaded.net.get_submodule(HEAD)[0]
    assert (head.weight != 0).all()  # the segmentation head is left whole
    norms = [m for m in loaded.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all((m.weight != 0).all() for m in norms)  # so are the norms
    assert all(c.bias is None or (c.bias != 0).all() for c in chosen.values())  # and biases
    assert _onnx_parity(loaded.net, tmp_path) < 1e-4


def test_structured_pruning_zeroes_whole_output_channels(tmp_path):
    metrics = _train(
        tmp_path,
        "callbacks=[default,pruning]",
        "callbacks.pruning.pruning_fn=ln_structured",
        "callbacks.pruning.amount=0.25",
    )
    net = load_model(metrics["best_model_path"]).net
    for name, conv in prunable_convs(net):
        dead = (conv.weight.flatten(1).abs().sum(1) == 0).float().mean().item()
        assert dead == pytest.approx(0.25, abs=1 / conv.out_channels), name


def test_channel_pruning_makes_a_smaller_network_of_the_same_output():
    torch.manual_seed(0)
    net = WatermarkUnet(**SMALL_NET).eval()
    before = parameters_and_gflops(net, 128)
    prune_channels(net, 0.5)
    after = parameters_and_gflops(net, 128)
    assert after[0] < 0.5 * before[0] and after[1] < 0.6 * before[1]
    assert net(torch.rand(2, 3, 96, 64)).shape == (2, 1, 96, 64)
    assert net.get_submodule(HEAD)[0].out_channels == 1


@pytest.fixture(scope="module")
def channel_pruned(tmp_path_factory) -> str:
    """The best checkpoint of a tiny run that removed half the channels at step 0."""
    run = tmp_path_factory.mktemp("channel_pruned")
    return _train(run, "callbacks=[default,channel_pruning]", "callbacks.channel_pruning.ratio=0.5")[
        "best_model_path"
    ]


def test_a_channel_pruned_checkpoint_loads_weights_only_evaluates_and_exports(channel_pruned, tmp_path):
    ckpt = torch.load(channel_pruned, map_location="cpu", weights_only=True)
    assert ARCHITECTURE in ckpt
    loaded = load_model(channel_pruned)
    full = hydra.utils.instantiate({**loaded.config["model"]["net"], "encoder_weights": None})
    assert parameters_and_gflops(loaded.net, 64)[0] < 0.5 * parameters_and_gflops(full, 64)[0]
    assert _onnx_parity(loaded.net, tmp_path) < 1e-4
    assert _evaluates(channel_pruned, tmp_path)["images"] == 8


def test_iterative_channel_pruning_fine_tunes_between_cuts(tmp_path):
    metrics = _train(
        tmp_path,
        "callbacks=[default,channel_pruning]",
        "callbacks.channel_pruning.iterations=2",
        "callbacks.channel_pruning.start=2",
        "callbacks.channel_pruning.every=4",
    )
    loaded = load_model(metrics["best_model_path"])
    assert metrics["prune/params"] < metrics["prune/params/before"] * 0.6
    assert parameters_and_gflops(loaded.net, 64)[0] == metrics["prune/params"]


def test_ckpt_from_starts_a_new_run_from_a_pruned_checkpoint(channel_pruned, tmp_path):
    source = load_model(channel_pruned)
    second = _train(tmp_path / "b", f"ckpt_from={channel_pruned}", "trainer.max_epochs=1")
    fine_tuned = load_model(second["best_model_path"])
    assert parameters_and_gflops(fine_tuned.net, 64)[0] == parameters_and_gflops(source.net, 64)[0]
    assert fine_tuned.config["model"]["net"]["encoder_weights"] is None  # the stored net is the pruned one's
    stem = "unet.encoder.conv_stem.weight"  # a few steps later, still the source's weights
    a, b = source.net.state_dict()[stem].flatten(), fine_tuned.net.state_dict()[stem].flatten()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9
    with pytest.raises(ValueError, match=r"ckpt_from= .* or ckpt_path="):
        _train(tmp_path / "c", f"ckpt_from={channel_pruned}", f"ckpt_path={channel_pruned}")


def test_distillation_loss_is_zero_for_the_teacher_itself_and_positive_otherwise():
    teacher = torch.randn(2, 1, 16, 16) * 3
    for loss in (BinaryDistillation(), BinaryDistillation(temperature=1.0, cwd_weight=1.0)):
        assert loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
        assert loss(teacher + torch.randn_like(teacher), teacher).item() > 1e-3
        assert loss(torch.zeros_like(teacher), teacher).item() > 1e-3


def test_distillation_keeps_the_teacher_frozen_and_out_of_the_student(trained_ckpt, pairs_folder, tmp_path):
    from wmseg.callbacks import Distillation

    cfg = compose_config(tmp_path, [*TINY, "debug=limit", "test=false"])
    try:
        model = hydra.utils.instantiate(cfg.model)
        datamodule = hydra.utils.instantiate(cfg.data)
        photos = str(pairs_folder / "images")  # the teacher labels crops of these too
        distill = Distillation(str(trained_ckpt), weight=2.0, warmup_steps=2, unlabelled=photos)
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=[distill], logger=False, enable_checkpointing=False
        )
        trainer.fit(model, datamodule=datamodule)
        trainer.save_checkpoint(tmp_path / "student.ckpt")
    finally:
        GlobalHydra.instance().clear()
    original = load_model(trained_ckpt).net.state_dict()
    assert all(torch.equal(v, original[k]) for k, v in distill.teacher.state_dict().items())
    assert not distill.teacher.training and not any(p.requires_grad for p in distill.teacher.parameters())
    assert "train/extra_loss" in trainer.callback_metrics  # the term was trained against
    saved = torch.load(tmp_path / "student.ckpt", map_location="cpu", weights_only=True)
    assert all(
        k.startswith(("net.", "train_metrics", "val_metrics", "test_metrics")) for k in saved["state_dict"]
    )
    assert {k.removeprefix("net.") for k in saved["state_dict"] if k.startswith("net.")} == set(
        model.net.state_dict()
    )
    assert distill.weight_at(1, 10) == pytest.approx(1.0) and distill.weight_at(5, 10) == 2.0
    crops = distill._unlabelled_crops(64, trainer)
    assert crops.shape == (4, 3, 64, 64) and torch.equal(crops, distill._unlabelled_crops(64, trainer))


@pytest.mark.slow
def test_channel_pruning_and_distillation_run_under_ddp_sim(trained_ckpt, tmp_path):
    args = [
        "train.py",
        "trainer=ddp_sim",
        "debug=limit",
        "data.synth.size=64",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.val_size=8",
        "data.test_size=8",
        "test=false",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "callbacks=[default,channel_pruning,distillation]",
        "callbacks.rich_progress_bar=null",
        f"callbacks.distillation.teacher={trained_ckpt}",
    ]
    out = run_script([*args, f"hydra.run.dir={tmp_path}/run"], tmp_path, timeout=400, start_new_session=True)
    assert out.returncode == 0, out.stderr[-3000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 12 and ARCHITECTURE in ckpt
    net = load_model(last).net
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    full = WatermarkUnet(
        **{
            k: v
            for k, v in load_model(trained_ckpt).config["model"]["net"].items()
            if k in ("encoder_name", "decoder_channels")
        }
    )
    assert parameters_and_gflops(net, 64)[0] < parameters_and_gflops(full, 64)[0]

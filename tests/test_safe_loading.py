"""A model file never runs code: crafted checkpoints and ONNX files are refused, and
create nothing; real ones still load."""

import hydra
import onnx
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_config
from wmseg.errors import CheckpointError, ConfigError
from wmseg.export.onnx import set_metadata
from wmseg.inference import OnnxPredictor, TorchPredictor, load_model
from wmseg.safe_build import DATA, NETWORK, check_config
from wmseg.tasks.evaluate import evaluate
from wmseg.tasks.export import export
from wmseg.tasks.run_data import stored_splits


def _tampered(trained_ckpt, out, edit) -> str:
    """A copy of the trained checkpoint whose stored run config `edit` changed."""
    ckpt = torch.load(trained_ckpt, map_location="cpu", weights_only=True)
    edit(ckpt["wmseg"]["config"])
    torch.save(ckpt, out)
    return str(out)


def _write_text_call(victim) -> dict:
    """A config node that, built by plain Hydra, writes the file `victim`."""
    return {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(victim)]}, "owned"],
    }


def test_the_crafted_node_would_run_under_plain_hydra(tmp_path):
    # The threat is real: Hydra alone builds the node, and the file appears.
    victim = tmp_path / "proof.txt"
    hydra.utils.instantiate(OmegaConf.create({"x": _write_text_call(victim)})).x  # noqa: B018
    assert victim.read_text() == "owned"


def test_nested_target_in_the_network_config_is_refused(trained_ckpt, tmp_path):
    victim = tmp_path / "victim.txt"

    def edit(config):
        config["model"]["net"]["mean"] = _write_text_call(victim)

    path = _tampered(trained_ckpt, tmp_path / "nested.ckpt", edit)
    with pytest.raises(CheckpointError, match=r"nested\.ckpt.*pathlib\.Path\.write_text.*model\.net\.mean"):
        load_model(path)
    with pytest.raises(CheckpointError, match=r"not on the allowlist|outside wmseg"):
        TorchPredictor(path)
    assert not victim.exists()


def test_dotted_chain_through_an_allowed_module_is_refused(trained_ckpt, tmp_path):
    victim = tmp_path / "chain.txt"

    def edit(config):
        config["model"]["net"] = {
            "_target_": "wmseg.models.unet.torch.os.system",
            "_args_": [f"touch {victim}"],
        }

    path = _tampered(trained_ckpt, tmp_path / "chain.ckpt", edit)
    with pytest.raises(CheckpointError, match=r"reaches the module torch, outside the allowed packages"):
        load_model(path)
    assert not victim.exists()


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("os.system", "outside wmseg"),
        ("antigravity.fly", "outside wmseg"),  # never imported: importing it has effects
        ("wmseg.models.losses.BCEDiceLoss", "not on the allowlist"),
        ("wmseg.models.no_such_thing", "does not resolve"),
        ("wmseg.models.WatermarkUnet; rm -rf", "not a dotted class name"),
    ],
)
def test_network_allowlist_compares_the_real_object(target, why):
    with pytest.raises(CheckpointError, match=why):
        check_config({"_target_": target}, NETWORK, "f.ckpt")


def test_interpolations_partials_and_non_data_values_are_refused():
    net = {"_target_": "wmseg.models.WatermarkUnet", "encoder_name": "resnet18"}
    check_config(net, NETWORK, "f.ckpt")  # the plain config passes
    for bad, why in (
        ({**net, "encoder_name": "${oc.env:HOME}"}, "interpolation"),
        ({**net, "_partial_": True}, "_partial_ .* not allowed"),
        ({**net, "mean": torch.zeros(3)}, "Tensor, not plain data"),
        ({**net, 3: "x"}, "key 3 .* not a string"),
    ):
        with pytest.raises(CheckpointError, match=why):
            check_config(bad, NETWORK, "f.ckpt")


def test_a_stored_data_config_is_read_as_its_splits_and_its_augmentation_is_never_built():
    from wmseg.data.splits import SyntheticSplits, splits_config

    augment = yaml.safe_load((CONF / "data" / "augment" / "basic.yaml").read_text())
    augment["transforms"].append({"_target_": "albumentations.Lambda"})  # would run code if built
    data = {
        "_target_": "wmseg.data.datamodule.WatermarkDataModule",
        "synth": {"_target_": "wmseg.synth.SynthConfig", "size": 64},
        "val_size": 3,
        "batch_size": 4,
        "cache": "disk",
        "augment": augment,
    }
    splits = splits_config(data)
    assert splits == {
        "_target_": "wmseg.data.splits.SyntheticSplits",
        "synth": data["synth"],
        "val_size": 3,
    }
    check_config(splits, DATA, "f.ckpt")
    built = stored_splits({"data": data}, "f.ckpt", "split=val")
    assert isinstance(built, SyntheticSplits) and len(built.eval_sets("val")[0]) == 3
    with pytest.raises(CheckpointError, match="not on the allowlist"):
        check_config({**splits, "_target_": "wmseg.models.WatermarkUnet"}, DATA, "f.ckpt")
    with pytest.raises(ConfigError, match=r"f\.ckpt: data\._target_='my\.Module'"):
        stored_splits({"data": {**data, "_target_": "my.Module"}}, "f.ckpt", "split=val")


def test_nested_target_in_the_stored_data_config_is_refused_by_split_and_export(trained_ckpt, tmp_path):
    victim = tmp_path / "data_victim.txt"

    def edit(config):
        config["data"]["synth"]["opacity"] = _write_text_call(victim)

    path = _tampered(trained_ckpt, tmp_path / "data.ckpt", edit)
    cfg = compose_config(tmp_path / "eval", [f"ckpt={path}", "split=val"], config_name="evaluate")
    with pytest.raises(CheckpointError, match=r"data\.ckpt.*data\.synth\.opacity"):
        evaluate(cfg)
    cfg = compose_config(tmp_path / "export", [f"ckpt={path}", "sample_size=64"], config_name="export")
    with pytest.raises(CheckpointError, match=r"data\.synth\.opacity"):
        export(cfg)
    assert not victim.exists()
    assert not (tmp_path / "export" / "model.onnx").exists()  # refused before anything is written


def test_a_tampered_calibrated_checkpoint_is_refused_and_a_real_one_loads(trained_ckpt, tmp_path):
    from wmseg.tasks.evaluate import write_calibrated

    calibrated = write_calibrated(trained_ckpt, tmp_path / "calibrated.ckpt", 0.3, {"metric": "f1"})
    assert load_model(calibrated).threshold == pytest.approx(0.3)  # the real file loads
    victim = tmp_path / "calibrated_victim.txt"
    path = _tampered(
        calibrated,
        tmp_path / "bad_calibrated.ckpt",
        lambda c: c["model"]["net"].update({"decoder_channels": [_write_text_call(victim)]}),
    )
    with pytest.raises(CheckpointError, match=r"model\.net\.decoder_channels\[0\]"):
        load_model(path)
    assert not victim.exists()


def _with_metadata(exported, tmp_path, name, **changes) -> str:
    folder, _ = exported
    model = onnx.load(str(folder / "model.onnx"))
    meta = {p.key: p.value for p in model.metadata_props} | changes
    set_metadata(model, meta)
    out = tmp_path / name
    onnx.save(model, str(out))
    return str(out)


def test_onnx_metadata_is_data_checked_never_built(exported, tmp_path):
    folder, _ = exported
    real = OnnxPredictor(folder / "model.onnx")
    assert real.model_config["_target_"] == "wmseg.models.WatermarkUnet" and 0 < real.threshold < 1

    victim = tmp_path / "onnx_victim.txt"
    crafted = yaml.safe_dump({"_target_": "os.system", "_args_": [f"touch {victim}"]})
    with pytest.raises(CheckpointError, match=r"evil\.onnx.*os\.system.*model_config"):
        OnnxPredictor(_with_metadata(exported, tmp_path, "evil.onnx", model_config=crafted))
    python_tag = "!!python/object/apply:os.system ['touch " + str(victim) + "']"
    with pytest.raises(CheckpointError, match="not YAML"):
        OnnxPredictor(_with_metadata(exported, tmp_path, "tag.onnx", model_config=python_tag))
    assert not victim.exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("stride", "0", r"stride='0' is not a power of two"),
        ("stride", "abc", r"stride='abc'"),
        ("threshold", "abc", r"threshold='abc' is not a number between 0 and 1"),
        ("threshold", "nan", r"threshold='nan'"),
        ("threshold", "1.5", r"threshold='1.5'"),
    ],
)
def test_onnx_metadata_values_are_checked(exported, tmp_path, key, value, message):
    path = _with_metadata(exported, tmp_path, f"bad_{key}.onnx", **{key: value})
    with pytest.raises(CheckpointError, match=rf"bad_{key}\.onnx: metadata {message}"):
        OnnxPredictor(path)

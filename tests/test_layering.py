"""Lightning stays out of the components: evaluation, ONNX inference, predict and serve run in a
process where importing Lightning fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

# Run in a fresh process: any import of Lightning there raises.
SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoLightning(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"):
                raise ImportError(f"{name} imported by a component that must not need it")
            return None

    sys.meta_path.insert(0, NoLightning())
    import importlib

    for module in (
        "wmseg.synth", "wmseg.data.dataset", "wmseg.data.splits", "wmseg.data.folder",
        "wmseg.data.cache", "wmseg.models.unet", "wmseg.models.losses", "wmseg.models.checkpoint",
        "wmseg.metrics", "wmseg.metrics.report", "wmseg.inference", "wmseg.inference.loading",
        "wmseg.export.onnx", "wmseg.export.quantize", "wmseg.predict.cli",
        "wmseg.serve.app", "wmseg.serve.cli",
        "wmseg.tasks.evaluate", "wmseg.tasks.export",
    ):
        importlib.import_module(module)

    sys.path.insert(0, "tests")
    from conftest import compose_config
    from wmseg.tasks.evaluate import evaluate

    from pathlib import Path

    ckpt, onnx, pairs, out = sys.argv[1:5]
    split = [f"ckpt={ckpt}", "split=val", "overlays=0"]
    by_split = evaluate(compose_config(Path(out, "split"), split, "evaluate"))
    folder = [f"onnx={onnx}", "data=folder", f"data.root={pairs}"]
    folder = evaluate(compose_config(Path(out, "folder"), folder, "evaluate"))
    print(json.dumps({"split": by_split["sets"], "folder": folder["sets"]}))
    """
)


def test_evaluation_and_onnx_inference_import_no_lightning(trained_ckpt, exported, pairs_folder, tmp_path):
    folder, _ = exported
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(trained_ckpt),
            str(folder / "model.onnx"),
            str(pairs_folder),
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sets = json.loads(done.stdout.strip().splitlines()[-1])
    assert sets["split"]["synthetic_val"]["images"] == 8  # the run's own val split (TINY: 8)
    assert sets["folder"]["pairs"]["images"] == 4
    assert (tmp_path / "folder" / "report.md").is_file()


def test_each_data_module_hands_its_splits_keys_to_its_splits(tmp_path):
    """A data config is read as its splits by key name (`splits_config`): a data module
    takes its loader keys and passes every other key to its splits class, so the two can
    never disagree on a key's name or default."""
    import inspect

    from wmseg.data.datamodule import FolderDataModule, WatermarkDataModule
    from wmseg.data.splits import SPLITS_OF, class_path

    for target, splits in SPLITS_OF.items():
        module_path, name = target.rsplit(".", 1)
        module = getattr(__import__(module_path, fromlist=[name]), name)
        assert class_path(module) == target
        ours = inspect.signature(module).parameters
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values())
        shared = set(ours) & set(inspect.signature(splits).parameters)
        assert shared <= {"root"}, f"{target} repeats keys of {splits.__name__}: {shared}"

    dm = WatermarkDataModule(seed=7, val_size=3, photo_sources=["skimage", "mvtb"], batch_size=2)
    assert dm.splits.seed == 7 and dm.splits.sizes["val"] == 3
    assert dm.splits.bank_options.photo_sources == ("skimage", "mvtb")
    folder = FolderDataModule(str(tmp_path), size=32, val_fraction=0.3, batch_size=2)
    assert folder.splits.size == 32 and folder.splits.fractions == (0.3, 0.1)
    with pytest.raises(TypeError, match=r"unknown data key.*photo_sourse.*SyntheticSplits"):
        WatermarkDataModule(photo_sourse=["skimage"])


def test_prediction_and_serving_import_nothing_of_training():
    # wmseg-predict and wmseg-serve, as their console scripts start them: no wmseg.tasks
    # (Hydra resolvers and config nodes of training), no synthesis, no Lightning.
    script = textwrap.dedent(
        """
        import json, sys
        import wmseg.cli
        from wmseg.predict.run_dir import register_predict_resolvers
        register_predict_resolvers()
        import wmseg.predict.cli, wmseg.predict.build, wmseg.predict.checks, wmseg.serve.cli, wmseg.serve.app
        loaded = sorted(m for m in sys.modules if m.startswith(("wmseg.tasks", "wmseg.synth", "lightning")))
        print(json.dumps(loaded))
        """
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _wmseg_imports(module: str) -> set[str]:
    """The wmseg modules `module`'s source imports, at any depth of its code."""
    import ast

    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("wmseg")}


def test_the_run_and_the_video_pipeline_depend_on_the_cleaner_interface_not_the_remover():
    for module in ("wmseg.predict.video", "wmseg.predict.batch_run"):
        imported = _wmseg_imports(module)
        assert "wmseg.predict.cleaner" in imported, imported
        assert "wmseg.predict.remover" not in imported, f"{module} imports the remover back"

"""The analysis scripts under experiments/ that decide between recipes: their arithmetic."""

import importlib.util
import json

import numpy as np
import pytest

from tests.conftest import ROOT, run_script


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(path, ious, fps):
    rows = [
        {"group": "m", "name": f"{i}.png", "iou": v, "f1": v, "fp_rate": None} for i, v in enumerate(ious)
    ]
    rows += [
        {"group": "c", "name": f"{i}.png", "iou": None, "f1": None, "fp_rate": v} for i, v in enumerate(fps)
    ]
    path.write_text(json.dumps({"per_image": rows}))
    return path


def test_compare_reports_pairs_images_by_name(tmp_path):
    a = _report(tmp_path / "a.json", [0.5, 0.4, 0.3, 0.2], [0.10])
    b = _report(tmp_path / "b.json", [0.6, 0.4, 0.5, 0.1], [0.05])
    out = run_script(
        ["experiments/compare_reports.py", str(a), str(b), "--out", str(tmp_path / "cmp")], tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["set"]: r for r in json.loads((tmp_path / "cmp.json").read_text())}
    d = np.array([0.1, 0.0, 0.2, -0.1])
    assert rows["m"]["diff"] == pytest.approx(d.mean())
    assert rows["m"]["se"] == pytest.approx(d.std(ddof=1) / 2)
    assert rows["m"]["b_better"] == 2 and rows["m"]["marked"] == 4
    assert rows["c"]["a_fp"] == pytest.approx(0.10) and rows["c"]["b_fp"] == pytest.approx(0.05)
    assert rows["all"]["marked"] == 4 and rows["all"]["clean"] == 1
    assert "+0.0500" in (tmp_path / "cmp.md").read_text()


def test_compare_reports_refuses_reports_of_other_images(tmp_path):
    a = _report(tmp_path / "a.json", [0.5], [])
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"per_image": [{"group": "x", "name": "y.png", "iou": 0.1, "fp_rate": None}]}))
    out = run_script(["experiments/compare_reports.py", str(a), str(b)], tmp_path)
    assert out.returncode != 0 and "share no" in out.stderr


def test_compare_reports_names_a_file_that_is_not_a_report(tmp_path):
    a = _report(tmp_path / "a.json", [0.5], [])
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"sets": {}}))
    out = run_script(["experiments/compare_reports.py", str(a), str(b)], tmp_path)
    assert out.returncode != 0 and f"{b} has no per_image" in out.stderr


def test_first_commit_follows_renames_not_look_alikes(tmp_path):
    import subprocess

    def git(*args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
        }
        return subprocess.run(
            ["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    index = _load("index_results")
    git("init", "-q")
    report = "".join(f'{{"name": "{i}.png", "iou": 0.{i}}}\n' for i in range(40))
    (tmp_path / "old.json").write_text(report)
    git("add", "-A")
    git("commit", "-qm", "a report")
    first = git("rev-parse", "--short", "HEAD")
    (tmp_path / "study").mkdir()
    git("mv", "old.json", "study/moved.json")
    # A new report nearly the same as the moved one, beside it.
    (tmp_path / "study" / "similar.json").write_text(report.replace("0.39", "0.38"))
    git("add", "-A")
    git("commit", "-qm", "move it and add another")
    second = git("rev-parse", "--short", "HEAD")
    (tmp_path / "study" / "new.json").write_text("{}")

    assert index.first_commit(tmp_path / "study" / "moved.json") == first
    assert index.first_commit(tmp_path / "study" / "similar.json") == second
    assert index.first_commit(tmp_path / "study" / "new.json") == "uncommitted"

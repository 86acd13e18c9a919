"""Write experiments/results/index.csv: one row per result file.

    python experiments/index_results.py

Columns: file (relative to results/), study (its folder, named like its record under
records/), commit (the one that first added the file, followed through exact renames), command
(the one recorded in the file, or in its .json sibling), headline (the figure a reader
looks for first). Rows already in the index keep their commit (unless it was
"uncommitted"), command and headline;
files new since are added. `tests/test_experiments_index.py` checks the index against the
files present.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
INDEX = RESULTS / "index.csv"
COLUMNS = ["file", "study", "commit", "command", "headline"]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd).stdout


def first_commit(path: Path) -> str:
    # Not `git log --follow`: it also follows copies and look-alikes, so a new report that
    # resembles an old one would get the old one's commit. Renames are followed by hand.
    cwd = path.parent
    rel = _git(cwd, "ls-files", "--full-name", "--", path.name).strip()
    if not rel:
        return "uncommitted"
    while True:
        added = _git(cwd, "log", "--diff-filter=A", "--format=%h", "--", f":/{rel}").split()
        if not added:
            return "uncommitted"
        commit = added[-1]
        status = _git(cwd, "show", "-M", "--diff-filter=R", "--name-status", "--format=", commit)
        renamed_from = [ln.split("\t")[1] for ln in status.splitlines() if ln.endswith(f"\t{rel}")]
        if not renamed_from:
            return commit
        rel = renamed_from[0]


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def headline(data) -> str:
    if isinstance(data, dict) and "best_score" in data:
        return f"best {data['monitor']} {_fmt(data['best_score'])} at step {data['best_step']}"
    if isinstance(data, dict) and "best_val_iou" in data:
        return f"best val/iou {_fmt(data['best_val_iou'])}"
    if isinstance(data, dict) and isinstance(data.get("sets"), dict):
        return "; ".join(f"{k} mean IoU {_fmt(v.get('mean_iou'))}" for k, v in data["sets"].items())
    if isinstance(data, list) and data and all(isinstance(r, dict) and "diff" in r for r in data):
        return "; ".join(f"{r['set']} B-A {r['diff']:+.4f} (SE {r['se']:.4f})" for r in data)
    return ""


def describe(path: Path) -> tuple[str, str]:
    """(command, headline) from the file or its .json sibling."""
    sibling = path.with_suffix(".json")
    data = None
    if sibling.exists():
        try:
            data = json.loads(sibling.read_text())
        except json.JSONDecodeError:
            data = None
    command = data.get("command", "") if isinstance(data, dict) else ""
    if not command and isinstance(data, dict) and isinstance(data.get("sets"), dict):
        # evaluate.py reports name the model and the sets, not the command line
        model = str(data.get("model", "?"))
        kind, _, where = model.partition(":")
        flags = " tta=true" if "(flip-averaged)" in model else ""
        where = where.replace(" (flip-averaged)", "")
        sets = ",".join(k for k in data["sets"] if k != "all")
        command = f"python evaluate.py {'onnx' if kind == 'onnx' else 'ckpt'}={where}{flags} (sets: {sets})"
    if not command and path.name.startswith("paired_"):
        md = path.with_suffix(".md")
        pairs = re.findall(r"^([AB]): `([^`]+)`", md.read_text(), flags=re.M) if md.exists() else []
        if len(pairs) == 2:
            command = f"python experiments/compare_reports.py {pairs[0][1]} {pairs[1][1]}"
    if not command and path.suffix == ".md":
        m = re.search(r"`((?:python|wmseg-)[^`]+)`", path.read_text())
        command = m.group(1) if m else ""
    text = headline(data)
    if not text and path.suffix == ".md":
        text = path.read_text().splitlines()[0].lstrip("# ").strip()
    return " ".join(str(command).split()), " ".join(text.split())[:300]


def main() -> None:
    old = {}
    if INDEX.exists():
        with INDEX.open(newline="") as f:
            old = {row["file"]: row for row in csv.DictReader(f)}
    rows = []
    for path in sorted(p for p in RESULTS.rglob("*") if p.is_file() and p != INDEX):
        name = path.relative_to(RESULTS).as_posix()
        if name in old:
            if old[name]["commit"] == "uncommitted":  # indexed before its commit: look again
                old[name]["commit"] = first_commit(path)
            rows.append(old[name])
            continue
        command, text = describe(path)
        rows.append(
            {
                "file": name,
                "study": path.parent.relative_to(RESULTS).as_posix(),
                "commit": first_commit(path),
                "command": command,
                "headline": text,
            }
        )
    with INDEX.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{INDEX}: {len(rows)} rows")


if __name__ == "__main__":
    main()

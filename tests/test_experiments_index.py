"""experiments/: the results manifest matches the files, and every record link resolves."""

from __future__ import annotations

import csv
import re

from tests.conftest import ROOT

EXPERIMENTS = ROOT / "experiments"
RESULTS = EXPERIMENTS / "results"
RECORDS = EXPERIMENTS / "records"


def _index() -> list[dict[str, str]]:
    with (RESULTS / "index.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_results_index_lists_every_result_file_once() -> None:
    rows = _index()
    listed = [r["file"] for r in rows]
    present = sorted(p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("*") if p.is_file())
    present.remove("index.csv")
    assert len(listed) == len(set(listed)), "a file is listed twice in results/index.csv"
    missing = sorted(set(present) - set(listed))
    stale = sorted(set(listed) - set(present))
    assert not missing, f"not in results/index.csv (run python experiments/index_results.py): {missing}"
    assert not stale, f"listed in results/index.csv but gone: {stale}"


def test_results_live_in_study_folders_named_like_records() -> None:
    top = sorted(p.name for p in RESULTS.iterdir() if p.is_file())
    assert top == ["index.csv"], f"result files belong in results/<study>/, not at the top: {top}"
    records = {p.stem for p in RECORDS.glob("*.md")}
    for row in _index():
        assert row["file"].split("/")[0] == row["study"], row
        assert row["study"] in records, f"{row['file']}: no record records/{row['study']}.md"
        assert re.fullmatch(r"[0-9a-f]{7,40}", row["commit"]), row
        assert re.fullmatch(r"[a-z0-9_]+\.(md|json|png|jpg)", row["file"].split("/")[1]), row


def test_every_study_is_in_the_index_and_links_resolve() -> None:
    readme = (EXPERIMENTS / "README.md").read_text()
    for record in RECORDS.glob("*.md"):
        assert f"(records/{record.name})" in readme, f"{record.name} has no row in experiments/README.md"
    documents = [EXPERIMENTS / "README.md", ROOT / "README.md", *RECORDS.glob("*.md")]
    for doc in documents:
        text = doc.read_text()
        links = re.findall(r"\]\(([^)#\s]+)\)", text)
        paths = re.findall(r"`((?:\.\./|experiments/)?results/[a-z0-9_]+/[a-z0-9_]+\.(?:md|json|png))`", text)
        for target in links + paths:
            if target.startswith("http"):
                continue
            base = ROOT if target.startswith("experiments/") else doc.parent
            assert (base / target).exists(), f"{doc.relative_to(ROOT)}: {target} does not exist"


def test_readme_figures_link_their_records() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Headline figures") :].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert rows
    for row in rows:
        if set(row) <= set("|- "):
            continue
        assert "](experiments/" in row or row.rstrip().endswith("| same |"), f"no record linked: {row[:80]}"

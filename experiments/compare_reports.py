"""Paired comparison of two evaluate.py reports on the same images: per set, the mean of
B - A per-image IoU over the marked images both measured, its standard error, and how many
images B is better on; the mean of each alone; clean-image FP rates side by side.

    python experiments/compare_reports.py A/report.json B/report.json [--out <paired_x.md>]

Images are matched by (set, file name); the reports must come from the same folders.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from wmseg.atomic import write_text_atomic


def per_image(path: Path) -> dict[tuple[str, str], dict]:
    report = json.loads(Path(path).read_text())
    if "per_image" not in report:
        raise SystemExit(f"{path} has no per_image list: give the report.json that evaluate.py writes")
    return {(r["group"], r["name"]): r for r in report["per_image"]}


def compare(a: dict, b: dict) -> list[dict]:
    rows = []
    for group in [*sorted({g for g, _ in a}), "all"]:
        keys = [k for k in a if k in b and (group == "all" or k[0] == group)]
        pairs = [
            (a[k]["iou"], b[k]["iou"]) for k in keys if a[k]["iou"] is not None and b[k]["iou"] is not None
        ]
        fps = [(a[k]["fp_rate"], b[k]["fp_rate"]) for k in keys if a[k].get("fp_rate") is not None]
        row: dict = {"set": group, "marked": len(pairs), "clean": len(fps)}
        if pairs:
            d = [y - x for x, y in pairs]
            row |= {
                "a_mean_iou": statistics.fmean(x for x, _ in pairs),
                "b_mean_iou": statistics.fmean(y for _, y in pairs),
                "diff": statistics.fmean(d),
                "se": statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan"),
                "b_better": sum(v > 0 for v in d),
            }
        if fps:
            row |= {"a_fp": statistics.fmean(x for x, _ in fps), "b_fp": statistics.fmean(y for _, y in fps)}
        rows.append(row)
    return rows


def markdown(rows: list[dict], a: str, b: str) -> str:
    def f(row: dict, key: str, pct: bool = False) -> str:
        v = row.get(key)
        return "-" if v is None else f"{100 * v:.1f} %" if pct else f"{v:.4f}"

    lines = [
        f"A: `{a}`  ",
        f"B: `{b}`",
        "",
        "| set | marked | A mean IoU | B mean IoU | B - A (SE) | B better | clean | A FP | B FP |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "-" if "diff" not in r else f"{r['diff']:+.4f} ({r['se']:.4f})"
        better = "-" if "b_better" not in r else f"{r['b_better']}/{r['marked']}"
        lines.append(
            f"| {r['set']} | {r['marked']} | {f(r, 'a_mean_iou')} | {f(r, 'b_mean_iou')} | {diff} "
            f"| {better} | {r['clean']} | {f(r, 'a_fp', True)} | {f(r, 'b_fp', True)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--out", type=Path, help="also write the table (.md) and rows (.json) here")
    args = parser.parse_args()
    a, b = per_image(args.a), per_image(args.b)
    if not set(a) & set(b):
        raise SystemExit(
            f"{args.a} and {args.b} share no (set, image) names: were they run on the same folders?"
        )
    rows = compare(a, b)
    text = markdown(rows, str(args.a), str(args.b))
    print(text)
    if args.out:
        write_text_atomic(args.out.with_suffix(".md"), text)
        write_text_atomic(args.out.with_suffix(".json"), json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

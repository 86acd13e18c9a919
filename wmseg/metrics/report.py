"""The evaluation report: its table, its Markdown, the PR plot and the grid of the worst
and best images, each file written atomically. No Lightning."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wmseg.atomic import save_png_atomic, write_atomic, write_text_atomic
from wmseg.inference.overlay import overlay_row, stack_rows

COLUMNS = ("images", "mean_iou", "mean_f1", "global_iou", "precision", "recall", "empty_fp_rate")


def sizes_text(long_side: int | list[int | None] | None) -> str:
    def one(size: int | None) -> str:
        return "full size" if size is None else f"long side {size} px"

    if isinstance(long_side, list):
        return "the mean of " + ", ".join(one(size) for size in long_side)
    return one(long_side)


def overlay_row_of(item: Any, prob: np.ndarray, threshold: float, height: int = 192) -> np.ndarray:
    """The image | truth | prediction row of one scored item (`.image`, `.mask`), `height` px tall."""
    from PIL import Image

    row = overlay_row(item.image, item.mask, prob >= threshold)
    w = max(1, round(row.shape[1] * height / row.shape[0]))
    return np.asarray(Image.fromarray(row).resize((w, height), Image.Resampling.BILINEAR))


class ExtremeRows:
    """The rows of the `k` lowest- and `k` highest-IoU images, kept as they stream past:
    the overlay grid needs no second prediction, and memory stays 2k rows."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._low: list[tuple[float, int, np.ndarray]] = []  # max-heap by -IoU
        self._high: list[tuple[float, int, np.ndarray]] = []  # min-heap by IoU
        self._seen = 0

    def offer(self, iou: float, make_row: Callable[[], np.ndarray]) -> None:
        if self.k <= 0:
            return
        seq, self._seen = self._seen, self._seen + 1  # ties keep their order, never compare rows
        low_in = len(self._low) < self.k or (-iou, -seq) > self._low[0][:2]
        high_in = len(self._high) < self.k or (iou, seq) > self._high[0][:2]
        if not (low_in or high_in):
            return
        row = make_row()
        if low_in:
            (heapq.heappush if len(self._low) < self.k else heapq.heapreplace)(self._low, (-iou, -seq, row))
        if high_in:
            (heapq.heappush if len(self._high) < self.k else heapq.heapreplace)(self._high, (iou, seq, row))

    def rows(self) -> list[np.ndarray]:
        """Worst first, then best, each image once."""
        # By arrival, so an image in both heaps (fewer than 2k seen) is drawn once.
        kept = {-neg_seq: (-neg_iou, row) for neg_iou, neg_seq, row in self._low}
        kept |= {seq: (iou, row) for iou, seq, row in self._high}
        return [kept[seq][1] for seq in sorted(kept, key=lambda seq: (kept[seq][0], seq))]


def plot_pr(curves: dict[str, tuple], path: Path) -> None:
    """The PR curve of every set, the used (o) and best-F1 (*) thresholds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (precision, recall, thresholds, best_t, used_t) in curves.items():
        (line,) = ax.plot(recall, precision, label=name)
        for t, marker in ((used_t, "o"), (best_t, "*")):
            i = int(np.abs(thresholds - t).argmin())
            ax.plot(recall[i], precision[i], marker, color=line.get_color(), markersize=8)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR (o: used, *: best F1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| set | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(fmt(r.get(c)) for c in COLUMNS) + " |" for name, r in rows.items()]
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    """report.md: the threshold used, the best thresholds per set, the table, skipped files."""
    results = report["sets"]
    best_t = "; ".join(
        f"{k}: {v['best_f1_threshold']:.2f} (F1 {v['best_f1']:.4f})" for k, v in results.items()
    )
    best_iou = "; ".join(
        f"{k}: {v['best_mean_iou_threshold']:.2f} ({v['best_mean_iou']:.4f})"
        for k, v in results.items()
        if v["best_mean_iou"] is not None
    )
    md = (
        f"# Evaluation of {report['model']}\n\nthreshold {report['threshold']:.3f} "
        f"({report['threshold_source']}); best-F1 threshold per set: {best_t}; "
        f"best mean-IoU threshold per set: {best_iou or '-'}; "
        f"images run at {sizes_text(report['long_side'])}\n\n{markdown_table(results)}\n"
    )
    if report["bad_files"]:
        md += "\n## Skipped files\n\n"
        md += "\n".join(f"- {b['file']}: {b['error']}" for b in report["bad_files"]) + "\n"
    return md


def write_report(
    out_dir: Path, report: dict[str, Any], curves: dict[str, tuple], extremes: ExtremeRows
) -> None:
    """report.json, report.md, pr_curve.png and the worst/best overlay grid, each atomically."""
    write_text_atomic(out_dir / "report.json", json.dumps(report, indent=2))
    write_text_atomic(out_dir / "report.md", report_markdown(report))
    plot_pr(curves, out_dir / "pr_curve.png")
    rows = extremes.rows()
    if rows:
        save_png_atomic(stack_rows(rows), out_dir / "overlays_worst_best.png")

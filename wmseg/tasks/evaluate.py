"""The evaluation task: one model (checkpoint or ONNX) on one or more datasets -> a report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from wmseg.atomic import check_writable, write_atomic
from wmseg.data.folder import POOLED, DataError, Item
from wmseg.image_files import allow_pixels_in_process
from wmseg.inference import FlipAveraged, Predictor, predict_items
from wmseg.inference.loading import load_predictor
from wmseg.metrics import SegmentationMeter
from wmseg.metrics.report import ExtremeRows, markdown_table, overlay_row_of, write_report
from wmseg.models.checkpoint import read_checkpoint
from wmseg.tasks.checks import ConfigError, check_eval_config
from wmseg.tasks.run_data import data_splits, stored_splits

log = logging.getLogger(__name__)


def build_predictor(cfg: DictConfig) -> Predictor:
    """The model to measure: `ckpt=` (torch, in fp32) or `onnx=` (ONNX Runtime), on
    `device`, flip-averaged with `tta`."""
    onnx = cfg.get("onnx") is not None
    predictor = load_predictor(
        cfg.onnx if onnx else cfg.ckpt,
        device=cfg.get("device"),
        threads=cfg.get("threads", 0),
        fp16=False,  # measured as trained
        net_config=OmegaConf.to_container(cfg.model.net, resolve=True) if cfg.get("model") else None,
        x64_quant_precision=cfg.get("x64_quant_precision", False),
        warm_up=False,
        key="onnx" if onnx else "ckpt",
    )
    return FlipAveraged(predictor) if cfg.get("tta") else predictor


def _long_side(value: Any, stride: int) -> int | list[int | None] | None:
    """`long_side` checked: null, a whole number of pixels >= stride, or a list of those
    (sizes whose probabilities are averaged)."""
    sizes = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
    if sizes == []:
        raise ConfigError("long_side=[]: give at least one size, e.g. [null,768], or null")
    listed = sizes if isinstance(sizes, list) else [sizes]
    for size in listed:
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < stride):
            shown = "[" + ",".join("null" if x is None else str(x) for x in listed) + "]"
            raise ConfigError(
                f"long_side={shown if isinstance(sizes, list) else sizes}: {size} is not a whole number "
                f"of pixels >= {stride}; give such a number, null (full size), or a list of those to "
                "average, e.g. [null,768]"
            )
    return sizes


def _by_size(items) -> list[int]:
    """Indices sorted by image size (from file headers where the set can), for full batches."""
    size_of = getattr(items, "image_size", None)
    if size_of is None:
        return list(range(len(items)))

    def key(i: int) -> tuple[int, int]:
        try:
            return size_of(i)
        except (DataError, OSError):
            return (0, 0)  # unreadable: its load below reports it

    return sorted(range(len(items)), key=key)


def _load(items, order: list[int], skip_bad: bool, bad: list[dict[str, str]]):
    """Yield ((index, item), image) for each item that loads, one at a time (bounded memory).

    A bad file raises, naming it; with skip_bad it is listed in `bad` and skipped.
    """
    for i in order:
        try:
            item = items[i]
        except DataError as err:
            if not skip_bad:
                hint = "skip_bad=true lists it and measures the rest"
                raise DataError(err.path, f"{err.reason} ({hint})") from err
            log.warning("skipping %s", err)
            bad.append({"file": str(err.path), "error": str(err)})
            continue
        yield (i, item), item.image


def write_calibrated(ckpt: str | Path, out: str | Path, threshold: float, note: dict[str, Any]) -> Path:
    """A copy of checkpoint `ckpt` at `out` whose stored threshold is `threshold`; `note`
    (what it was measured on) goes beside it, so the file says where its threshold came from."""
    state = read_checkpoint(ckpt)  # the checked, code-free load the predictor uses
    hparams = state.setdefault("hyper_parameters", {})
    note = {"previous": hparams.get("threshold"), "threshold": threshold, **note}
    hparams["threshold"] = threshold
    state["wmseg_threshold_calibration"] = note
    return write_atomic(out, lambda tmp: torch.save(state, tmp))


def build_sets(cfg: DictConfig) -> list[Sequence[Item]]:
    """The sets to measure on: those of `cfg.data`, or with `split=` the synthetic split of
    the data the checkpoint (or `split_from`) was trained with, from its stored config:
    e.g. its validation split, to calibrate a threshold on the data training calibrated on."""
    split = cfg.get("split")
    if split is None:
        return data_splits(OmegaConf.to_container(cfg.data, resolve=True), "data").eval_sets()
    source = cfg.get("split_from") or cfg.ckpt
    stored = read_checkpoint(source).get("wmseg", {}).get("config", {})
    return stored_splits(stored, source, f"split={split}").eval_sets(split)


@dataclass
class Measured:
    """What one pass over the sets gives: a row of metrics per set (and pooled), the PR
    curves, every image's scores, the overlay rows of the extremes, the files skipped."""

    results: dict[str, dict[str, Any]]
    curves: dict[str, tuple]
    overall: SegmentationMeter
    extremes: ExtremeRows
    bad: list[dict[str, str]]


def measure(
    predictor: Predictor,
    sets: list[Sequence[Item]],
    threshold: float,
    long_side: int | list[int | None] | None,
    cfg: DictConfig,
) -> Measured:
    """Predict every image of every set once, streaming: metrics, curves and overlay rows
    are updated as each image passes, so memory does not grow with the sets."""
    measured = Measured({}, {}, SegmentationMeter(threshold), ExtremeRows(int(cfg.overlays)), [])
    for items in sets:
        meter = SegmentationMeter(threshold)
        group = getattr(items, "group", "set")
        pairs = _load(items, _by_size(items), cfg.skip_bad, measured.bad)
        predicted = predict_items(predictor, pairs, max_pixels=int(cfg.max_pixels), long_side=long_side)
        for (_, item), prob in predicted:
            score = meter.update(item.group, item.name, prob, item.mask)
            measured.overall.update(item.group, item.name, prob, item.mask)
            if score.iou is not None:
                measured.extremes.offer(score.iou, partial(overlay_row_of, item, prob, threshold))
        measured.results[group] = meter.compute()
        precision, recall, thresholds = meter.pr_curve()
        best = measured.results[group]["best_f1_threshold"]
        measured.curves[group] = (precision, recall, thresholds, best, threshold)
    if len(measured.results) > 1:
        measured.results[POOLED] = measured.overall.compute()
    return measured


def calibrate(cfg: DictConfig, results: dict[str, dict[str, Any]], long_side: Any) -> dict[str, Any]:
    """Write `cfg.calibrate`: the checkpoint with the threshold that maximised
    `calibrate_metric` on the pooled sets, and a note of what it was measured on."""
    pooled = results[POOLED] if POOLED in results else next(iter(results.values()))
    if not pooled["images_with_watermark"]:
        raise ConfigError(
            f"calibrate={cfg.calibrate}: the sets hold no watermark pixels; calibrate on pairs with marks"
        )
    metric = cfg.get("calibrate_metric", "f1")
    split = cfg.get("split")
    t = float(pooled[f"best_{metric}_threshold"])
    note = {
        "metric": metric,
        "best_f1": pooled["best_f1"],
        "best_mean_iou": pooled["best_mean_iou"],
        "tta": bool(cfg.get("tta")),
        "long_side": long_side,
        "data": (
            {"split": split, "of": "the run's stored data config"}
            if split
            else OmegaConf.to_container(cfg.data, resolve=True)
        ),
    }
    return {"path": str(write_calibrated(cfg.ckpt, cfg.calibrate, t, note)), "threshold": t}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Measure the model on every set of `cfg.data`; write the report to `cfg.paths.output_dir`."""
    # Check: every key, and every place written to, before any work.
    check_eval_config(cfg)
    allow_pixels_in_process(cfg.get("max_image_pixels"))  # the command owns its process
    out_dir = check_writable(cfg.paths.output_dir, "paths.output_dir")
    if cfg.get("calibrate"):
        check_writable(Path(cfg.calibrate).expanduser().parent, "calibrate (its folder)")
    # Build: the model, then the sets.
    predictor = build_predictor(cfg)
    threshold = float(cfg.threshold) if cfg.get("threshold") is not None else predictor.threshold
    long_side = _long_side(cfg.get("long_side"), predictor.stride)
    sets = build_sets(cfg)
    measured = measure(predictor, sets, threshold, long_side, cfg)
    report = {
        "model": predictor.name,
        "threshold": threshold,
        "threshold_source": "threshold=" if cfg.get("threshold") is not None else "model",
        "long_side": long_side,
        "sets": measured.results,
        "per_image": [s.__dict__ for s in measured.overall.images],
        "bad_files": measured.bad,
    }
    if cfg.get("calibrate"):
        report["calibrated"] = calibrate(cfg, measured.results, long_side)
    write_report(out_dir, report, measured.curves, measured.extremes)
    print(markdown_table(measured.results))
    if "calibrated" in report:
        calibrated = report["calibrated"]
        print(f"Calibrated checkpoint: {calibrated['path']} (threshold {calibrated['threshold']:.3f})")
    print(f"Report: {out_dir / 'report.md'}")
    return report

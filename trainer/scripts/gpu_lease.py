"""Train the reference model on a lent GPU machine in one call of the workplace's `device` tool.

A lease is short (one command of at most 10 minutes, 15 minutes of machine time in all), the
machine starts bare (PyTorch and OpenCV are there, segment-anything and pycocotools are not) and
only 64 MiB of the working tree travels, so everything is prepared here first:

    # here: a JPEG copy of the training images that fits the budget, and the two missing wheels
    PYTHONPATH=trainer trainer/.venv/bin/python trainer/scripts/gpu_lease.py pack \\
        --data /root/sae-data/synth-train-s1 --max-mb 28

    # there: one `run` call with carry [".carry"] and timeout_s about 120 s above --seconds
    python3 trainer/scripts/gpu_lease.py run --seconds 400

`run` installs the carried wheels, runs tests/test_device.py (the GPU tests), times a few steps of
the recipe, sizes the run to the time left (so the lr schedule's decays happen), trains, and
writes to $OUT: model-fp16.pt (weights only, float16-rounded, as committed), train_log.jsonl,
device-tests.txt and lease.json (recipe, steps, timings). Back here, evaluate model-fp16.pt on
the original held-out images (`python -m sae_trainer evaluate`) and build the package with
build_reference.py. The same command runs on a CPU (`--device cpu --seconds 60`) to rehearse it.
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

CARRY = ".carry"
WHEELS = ("segment-anything==1.0", "pycocotools==2.0.11")
# The paper's recipe on whole images (trainer/README.md): half boxes, first points uniform over the
# mask, 8 corrective clicks, the 2 iterations without a click. Continues the committed model.
RECIPE = ("--init models/sae-ref/checkpoint.pt --batch-size 16 --masks-per-image 16 "
          "--num-points 8 --box-probability 0.5 --point-depth 0 --lr 8e-4 --warmup-steps 20 "
          "--lr-decay-at 0.7,0.9 --seed 41 --checkpoint-every 50 --log-every 5")
CALIBRATION_STEPS = 12
CALIBRATION_SHARE = 0.2


# --- here ----------------------------------------------------------------------------------------

def pack(args: argparse.Namespace) -> None:
    """Copy the dataset's first images (by id) as JPEG until --max-mb, with their annotations."""
    from PIL import Image

    from sae_trainer.data import find_annotation_file

    out = os.path.join(CARRY, "train")
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    with open(find_annotation_file(args.data)) as f:
        coco = json.load(f)
    budget, used, kept = args.max_mb * 2 ** 20, 0, []
    for image in sorted(coco["images"], key=lambda im: im["id"]):
        name = os.path.splitext(os.path.basename(image["file_name"]))[0] + ".jpg"
        dest = os.path.join(out, "images", name)
        with Image.open(os.path.join(args.data, "images", os.path.basename(image["file_name"]))) as im:
            im.convert("RGB").save(dest, quality=args.quality)
        if used + os.path.getsize(dest) > budget:
            os.remove(dest)
            break
        used += os.path.getsize(dest)
        kept.append({**image, "file_name": name})
    ids = {im["id"] for im in kept}
    annotations = [a for a in coco["annotations"] if a["image_id"] in ids]
    with open(os.path.join(out, "annotations.json"), "w") as f:
        json.dump({**coco, "images": kept, "annotations": annotations}, f, separators=(",", ":"))
    wheels = os.path.join(CARRY, "whl")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", wheels, *WHEELS], check=True)
    print(f"{len(kept)} of {len(coco['images'])} images kept "
          f"({used / 2 ** 20:.1f} MiB) in {out}; wheels in {wheels}")


# --- there ---------------------------------------------------------------------------------------

def install_wheels() -> None:
    """Install the carried wheels of the packages this Python lacks (none on a trainer venv)."""
    import importlib.util

    wheels = os.path.join(CARRY, "whl")
    if not os.path.isdir(wheels):
        return
    # A wheel's name starts with its import name (segment_anything-1.0-..., pycocotools-...).
    missing = [w for w in sorted(os.listdir(wheels)) if importlib.util.find_spec(w.split("-")[0]) is None]
    if not missing:
        return
    site = "/tmp/site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--no-cache-dir", "--upgrade", "--target", site,
                    *[os.path.join(wheels, w) for w in missing]], check=True)
    sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))


def train_command(args: argparse.Namespace, out_dir: str, steps: int, max_seconds: float,
                  *extra: str) -> list:
    """The `python -m sae_trainer` arguments of one run of the recipe (later options win)."""
    return ["train", "--data", args.data, "--out", out_dir, "--device", args.device,
            "--loader-threads", str(args.loader_threads), *shlex.split(args.recipe),
            "--steps", str(steps), "--max-seconds", str(max_seconds), *extra]


def run_training(argv: list) -> dict:
    """What `python -m sae_trainer train ...` does, in this process (CUDA starts once)."""
    from sae_trainer.__main__ import build_parser, train_config_from_args
    from sae_trainer.train import train

    return train(train_config_from_args(build_parser().parse_args(argv)))


def run(args: argparse.Namespace) -> None:
    start = time.time()
    # Before CUDA starts: deterministic cuBLAS (the trainer asks for deterministic algorithms).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    out = os.environ.get("OUT") or args.out
    if not out:
        sys.exit("gpu_lease run: set OUT (the device tool does) or pass --out")
    os.makedirs(out, exist_ok=True)
    install_wheels()
    sys.path.insert(0, "trainer")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, ["trainer", os.environ.get("PYTHONPATH")]))
    lease = {"recipe": args.recipe, "data": args.data, "device": args.device, "seconds": args.seconds}

    if not args.skip_device_tests:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "trainer/tests/test_device.py"],
                               capture_output=True, text=True)
        with open(os.path.join(out, "device-tests.txt"), "w") as f:
            f.write(tests.stdout + tests.stderr)
        lease["device_tests_rc"] = tests.returncode
        print(f"device tests: rc {tests.returncode}", flush=True)

    import torch

    from sae_trainer.model import compact_checkpoint
    from sae_trainer.train_config import LOG_NAME

    # TF32 matrix products: several times the float32 rate on an H100/H200, ample for training.
    torch.set_float32_matmul_precision(args.matmul_precision)
    lease["matmul_precision"] = args.matmul_precision

    calib_dir, run_dir = "/tmp/gpu-lease-calibration", "/tmp/gpu-lease-run"
    for stale in (calib_dir, run_dir):  # a second call on a warm machine starts afresh, not resumed
        shutil.rmtree(stale, ignore_errors=True)
    # A fifth of the budget at most, so a slow machine still leaves time to train.
    run_training(train_command(args, calib_dir, CALIBRATION_STEPS, CALIBRATION_SHARE * args.seconds,
                               "--log-every", "1"))
    with open(os.path.join(calib_dir, LOG_NAME)) as f:
        step_seconds = [json.loads(line)["seconds"] for line in f]
    per_step = statistics.median(step_seconds[2:] or step_seconds)  # the first steps warm up
    left = args.seconds - (time.time() - start)
    steps = int(0.95 * left / per_step)
    lease.update(seconds_per_step=per_step, planned_steps=steps, calibration_s=time.time() - start)
    print(f"calibration: {per_step:.2f} s/step; {steps} steps in the {left:.0f} s left", flush=True)
    if steps < 1:
        write_lease(out, lease)
        sys.exit(f"gpu_lease run: no time left to train after calibration ({per_step:.1f} s per "
                 f"step, {left:.0f} s left of --seconds {args.seconds:.0f})")

    argv = train_command(args, run_dir, steps, left)
    lease["command"] = "python -m sae_trainer " + shlex.join(argv)
    try:
        result = run_training(argv)
        lease.update(steps=result["steps"], stopped=result["stopped"], train_s=result["seconds"],
                     final=result["final"])
    finally:  # whatever was trained comes back, also after an error mid-run
        checkpoint = os.path.join(run_dir, "checkpoint.pt")
        if os.path.isfile(checkpoint):
            lease["lineage"] = compact_checkpoint(checkpoint, os.path.join(out, "model-fp16.pt"),
                                                  {"parent": "models/sae-ref", "gpu_lease": True})
        if os.path.isfile(os.path.join(run_dir, LOG_NAME)):
            with open(os.path.join(run_dir, LOG_NAME)) as src, \
                    open(os.path.join(out, LOG_NAME), "w") as dst:
                dst.write(src.read())
        lease["total_s"] = time.time() - start
        write_lease(out, lease)
        print(json.dumps(lease, indent=2, default=str))


def write_lease(out: str, lease: dict) -> None:
    with open(os.path.join(out, "lease.json"), "w") as f:
        json.dump(lease, f, indent=2, default=str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: carry a training set and the missing wheels")
    p.add_argument("--data", required=True)
    p.add_argument("--max-mb", type=float, default=28)
    p.add_argument("--quality", type=int, default=90)
    p.set_defaults(func=pack)
    r = sub.add_parser("run", help="there: train within --seconds and write the model to $OUT")
    r.add_argument("--seconds", type=float, default=400, help="the whole run's budget")
    r.add_argument("--data", default=os.path.join(CARRY, "train"))
    r.add_argument("--device", default="cuda")
    r.add_argument("--recipe", default=RECIPE, help="train options besides data, out, steps")
    r.add_argument("--loader-threads", type=int, default=min(12, os.cpu_count() or 1))
    r.add_argument("--out", help="where the results go when $OUT is unset")
    r.add_argument("--skip-device-tests", action="store_true")
    r.add_argument("--matmul-precision", choices=["highest", "high", "medium"], default="high",
                   help="torch.set_float32_matmul_precision (high: TF32 on CUDA)")
    r.set_defaults(func=run)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()

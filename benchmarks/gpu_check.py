"""The Python half of benchmarks/gpu_check.sh: what the machine holds, whether the fused optimizers are exact
there, the generated CIFAR-10, and the one table (and JSON) of every step's results.

  python benchmarks/gpu_check.py env                       # torch, the device, the optional packages
  python benchmarks/gpu_check.py optimizers --device cuda  # fused / foreach optimizers and clipping: bit-identical?
  python benchmarks/gpu_check.py data DIR --images 10000   # CIFAR-10 in the official format (tests/datagen.py)
  python benchmarks/gpu_check.py report WORK OUT           # WORK's results -> OUT/gpu_check.txt and .json

Only torch, numpy and the search core's packages are imported: the GPU machine has no pip.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("numpy", "scipy", "sklearn", "matplotlib", "tqdm", "tensorboard", "timm", "mmdet", "torchreid")
# P-DARTS on CIFAR-10 as the paper runs it: 25,000 training images per half, 3 stages of 25 epochs, the first 10
# of each with the alphas frozen, validation in the last 4; DARTS and PC-DARTS: 50 epochs (PC-DARTS: 15 frozen).
PAPER_IMAGES = 25_000
PAPERS = {  # algorithm: (bench configs of its stages, epochs, frozen epochs, validated epochs, the papers' figure)
    "pdarts": (("pdarts-s1", "pdarts-s2", "pdarts-s3"), 25, 10, 4,
               "0.3 GPU-days: ~7 h on a P100, ~12 h on a 1080Ti (paper); 3.3-4.1 h in a re-run of the authors' code"),
    "darts": (("darts",), 50, 0, 50, "~9 h on one 2080Ti (first order, one codebase's figure)"),
    "pc-darts": (("pc-darts",), 50, 15, 50, "~3 h on one 2080Ti (batch 256; one codebase's figure)"),
}
# A weights-only step against a full step (architecture + weights), and a validation pass against a full step, per
# image: the ratios of the H100 figures in BENCHMARKS.md (207 against 132 img/s) and a forward pass of three.
WEIGHTS_ONLY_SHARE = 132 / 207
VALID_SHARE = WEIGHTS_ONLY_SHARE / 3


def env() -> None:
    print(f"python {sys.version.split()[0]} | torch {torch.__version__} | CUDA {torch.version.cuda} | "
          f"cuda available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs")
    for name in OPTIONAL:
        print(f"{name}: {'yes' if importlib.util.find_spec(name) else 'MISSING'}")


def optimizers(device: str) -> bool:
    """Five steps of the search's SGD (momentum, weight decay) and Adam over the parameters of P-DARTS' stage-1
    supernet, with gradient clipping, each kernel against the per-tensor loop: bit for bit the same numbers? True if
    the search's choice (foreach SGD, Adam and clipping) is."""
    from pdarts_wild.config import resolve_config
    from pdarts_wild.spaces import get_space
    from pdarts_wild.supernet import Supernet

    config = resolve_config("pdarts", "cifar10")
    torch.manual_seed(0)
    space = get_space("darts")
    start = Supernet(space, space.initial_candidates(), 10, channels=16, layers=5).to(device)
    groups = {"SGD": list(start.weight_parameters()), "Adam": start.arch_parameters()}

    def run(name: str, kernel: str | None) -> list[torch.Tensor]:
        params = [p.detach().clone().requires_grad_() for p in groups[name]]
        options = {"foreach": False} if kernel is None else {kernel: True}
        if name == "SGD":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, config.lr, momentum=config.momentum,
                                                         weight_decay=config.weight_decay, **options)
        else:
            opt = torch.optim.Adam(params, config.arch_lr, betas=config.arch_betas,
                                   weight_decay=config.arch_weight_decay, **options)
        grads = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=grads).to(device)
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip, foreach=kernel is not None)
            opt.step()
        return params

    exact = {}
    for name in groups:
        loop = run(name, None)
        for kernel in ("foreach", "fused"):
            diff = max((a - b).abs().max().item() for a, b in zip(loop, run(name, kernel)))
            exact[name, kernel] = diff == 0
            print(f"{name} {kernel} (+ foreach clipping) vs per-tensor loop: max |difference| {diff:.1e}"
                  f"{' (bit-identical)' if diff == 0 else ''}")
    ok = exact["SGD", "foreach"] and exact["Adam", "foreach"]
    print(f"the search's optimizers (foreach SGD, Adam and clipping) on {device}: "
          f"{'bit-identical' if ok else 'NOT bit-identical'}; fused SGD "
          f"{'would be too' if exact['SGD', 'fused'] else 'would not be'}")
    return ok


def data(folder: Path, images: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from datagen import write_cifar10  # the tests' generator of the official format

    write_cifar10(folder, n_train=images, n_test=max(images // 10, 10))
    print(f"wrote {images} CIFAR-10 training images (official format, generated) into {folder}/cifar-10-batches-py")


# ------------------------------------------------------------------------------------------------ report


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def search_history(run: Path) -> list[dict[str, Any]] | None:
    """The epochs of a search run folder (its checkpoint's history), or None."""
    try:
        ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (no run, a killed one: nothing to report)
        return None
    return ckpt.get("history")


def whole_search(bench: dict[str, dict[str, Any]]) -> list[tuple[str, str, float, str]]:
    """Per algorithm and variant of ours (and the baseline): the hours of the paper's search, from each stage's
    measured images/s of a full step (weights-only steps and validation passes at the shares above)."""
    rows = []
    for algorithm, (configs, epochs, frozen, validated, paper) in PAPERS.items():
        measured = [bench.get(config, {}) for config in configs]
        for variant in measured[0]:  # in the order the steps measured them, the baseline first
            if not all(variant in record for record in measured):
                continue
            seconds = 0.0
            for config in configs:
                full = PAPER_IMAGES / bench[config][variant]["img_per_s"]  # one epoch of full steps
                seconds += (epochs - frozen) * full + frozen * full * WEIGHTS_ONLY_SHARE + validated * full * VALID_SHARE
            rows.append((algorithm, variant, seconds / 3600, paper))
    return rows


def _table(rows: list[tuple[str, ...]], left: int = 1) -> str:
    """Rows of text cells; the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def report(work: Path, out: Path) -> None:
    """One table of every step's figures (and every result in one JSON) from the files the steps wrote in ``work``."""
    results: dict[str, Any] = {"steps": _load(work / "steps.json") or {}, "bench_search": {}, "bench_train": {},
                               "search": {}}
    for path in sorted(work.glob("bench_search_*.json")):
        for config, record in (_load(path) or {}).items():
            results["bench_search"].setdefault(config, {}).update(record)
    for path in sorted(work.glob("bench_train_*.json")):
        for model, record in (_load(path) or {}).items():
            results["bench_train"].setdefault(model, {}).update(record)
    for run in sorted(work.glob("search_*")):
        history = search_history(run)
        if history:
            results["search"][run.name.removeprefix("search_")] = history
    bench = results["bench_search"]
    results["whole_search_hours"] = [{"algorithm": a, "variant": v, "hours": h, "papers": p}
                                     for a, v, h, p in whole_search(bench)]
    lines = []
    rows = [("step", "status")] + [(name, status) for name, status in results["steps"].items()]
    lines += [_table(rows, left=2), ""]
    if bench:
        rows = [("bench_search", "variant", "ms/step", "img/s", "peak MB", "compile s", "vs baseline", "mem ratio",
                 "max|grad diff|", "f32 rounding")]
        for config, record in bench.items():
            for variant, r in record.items():
                rows.append((config, variant, f"{r['step_ms']:.0f}", f"{r['img_per_s']:.1f}", f"{r['peak_mb']:.0f}",
                             f"{r['compile_s']:.0f}" if "compile_s" in r else "-",
                             f"{r['speedup']:.2f}x" if "speedup" in r else "-",
                             f"{r['memory_ratio']:.2f}" if "memory_ratio" in r else "-",
                             f"{r['max_abs_grad_diff']:.1e}" if "max_abs_grad_diff" in r else "-",
                             f"{r['check']['float32_rounding']['max_abs_grad_diff']:.1e}"
                             if "float32_rounding" in r.get("check", {}) else "-"))
        lines += [_table(rows), ""]
    if results["bench_train"]:
        rows = [("bench_train", "variant", "ms/step", "img/s", "peak MB", "warm-up s", "vs plain")]
        for model, record in results["bench_train"].items():
            rows += [(model, v, f"{r['step_ms']:.0f}", f"{r['img_per_s']:.1f}", f"{r['peak_mb']:.0f}",
                      f"{r.get('warmup_s', 0):.0f}", f"{r['speedup']:.2f}x") for v, r in record.items()]
        lines += [_table(rows), ""]
    if results["search"]:
        rows = [("search (one epoch per stage)", "stage", "img/s", "peak MB", "compile s", "graphs", "train loss",
                 "ETA at the end (s)")]
        for option, history in results["search"].items():
            rows += [(option, str(r["stage"]), f"{r['img_per_s']:.1f}", f"{r.get('peak_mem_mb', 0):.0f}",
                      f"{r.get('compile_s', 0):.0f}", str(r.get("compiled_graphs", "-")), f"{r['train_loss']:.4f}",
                      f"{r['eta_s']:.0f}" if r.get("eta_s") is not None else "-") for r in history]
        lines += [_table(rows), ""]
    if results["whole_search_hours"]:
        rows = [("whole search, paper settings", "variant", "hours (estimated)", "papers")]
        rows += [(r["algorithm"], r["variant"], f"{r['hours']:.2f}", r["papers"]) for r in results["whole_search_hours"]]
        lines += [_table(rows, left=4), f"(from the step times above at this batch; weights-only steps at "
                                f"{WEIGHTS_ONLY_SHARE:.2f} and validation at {VALID_SHARE:.2f} of a full step per image)",
                  ""]
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.txt").write_text(text + "\n")
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="torch, the device and the optional packages")
    o = sub.add_parser("optimizers", help="are the fused / foreach kernels bit-identical here?")
    o.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    d = sub.add_parser("data", help="generated CIFAR-10 in the official format")
    d.add_argument("folder", type=Path)
    d.add_argument("--images", type=int, default=10_000)
    r = sub.add_parser("report", help="one table and one JSON of the results in WORK")
    r.add_argument("work", type=Path)
    r.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.command == "env":
        env()
    elif args.command == "optimizers":
        return 0 if optimizers(args.device) else 1
    elif args.command == "data":
        data(args.folder, args.images)
    else:
        report(args.work, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

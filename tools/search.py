#!/usr/bin/env python
"""Search a cell with P-DARTS, DARTS, PC-DARTS, RF-DARTS or OPP-DARTS and write a genotype you can train
(see README, "Search"). Spaces: darts, RobustDARTS' s1-s4, and nb201 (NAS-Bench-201, whose result is
an arch string to look up in the benchmark or build with tools/model_info.py --net nb201).

Examples:
  tools/search.py                                   # P-DARTS on CIFAR-10, the paper's settings
  tools/search.py --dataset digits --preset quick   # every stage, ~10 min on 2 CPU cores, no download
  tools/search.py --algorithm darts --unrolled      # DARTS, second order
  tools/search.py --algorithm pc-darts              # PC-DARTS (partial channels, edge normalisation)
  tools/search.py --algorithm opp-darts             # OPP-DARTS (ops enter one at a time, loudest first)
  tools/search.py --algorithm darts --space s3 --unrolled --drop-path 0.2 --cutout 16   # RobustDARTS' S3 runs
  tools/search.py --algorithm rf-darts --space nb201 # NAS-Bench-201: writes the benchmark's arch string
  tools/search.py --out runs/x --resume             # continue a killed search where it stopped
  tools/search.py --compile reduce-overhead         # compiled cells replayed as CUDA graphs (CUDA)
  torchrun --nproc_per_node=4 tools/search.py --out runs/ddp   # several GPUs (or CPU processes)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


from pdarts_wild.cli import ToolParser
from pdarts_wild.compiling import BACKENDS, COMPILE_MODES
from pdarts_wild.config import PRESETS, ConfigError, SearchConfig, resolve_config
from pdarts_wild.data import DATASETS, DataError
from pdarts_wild.genotype import GenotypeError
from pdarts_wild.search import Search, SearchError, prepare_run_dir, resolve_device, run_tool
from pdarts_wild.spaces import SPACES
from pdarts_wild.strategies import STRATEGIES

RUN_FLAGS = ("out", "resume", "device", "progress")


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(
        prog="tools/search.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Hyper-parameters left out take the paper's value for the chosen algorithm and dataset, "
               "or the preset's. Per-stage flags take one value per stage, or one value for all stages.")
    run = p.add_argument_group("what to search")
    run.add_argument("--algorithm", choices=sorted(STRATEGIES), help="search algorithm (default: pdarts)")
    run.add_argument("--space", choices=sorted(SPACES),
                     help="search space: darts (8 ops), s1-s4 (RobustDARTS), nb201 (NAS-Bench-201 cell and skeleton; "
                          "darts, pc-darts, rf-darts, rf-pcdarts) (default: darts)")
    run.add_argument("--dataset", choices=DATASETS,
                     help="proxy dataset; cifar10/cifar100/svhn are downloaded into --data if missing, digits ships with "
                          "scikit-learn (default: cifar10)")
    run.add_argument("--data", help="dataset folder (default: ./data)")
    run.add_argument("--out", type=Path, help="run folder (default: runs/ALGORITHM-DATASET-seedN-TIME); never overwritten")
    run.add_argument("--resume", action="store_true", help="continue the search in --out from its last finished epoch")
    run.add_argument("--seed", type=int, help="random seed (default: 2, as the authors)")
    run.add_argument("--preset", choices=PRESETS,
                     help="paper: the published settings; quick: a small search of every stage, ~10 min on 2 CPU "
                          "cores with digits; tiny: seconds, for tests (default: paper)")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    run.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")

    net = p.add_argument_group("supernet and stages")
    net.add_argument("--channels", type=int, help="initial channels of the supernet (paper: 16)")
    net.add_argument("--layers", type=int, nargs="+",
                     help="cells per stage (P-DARTS: 5 11 17; DARTS: 8); nb201: cells per resolution of its skeleton (5)")
    net.add_argument("--partial-channels", type=int,
                     help="PC-DARTS' K: only 1/K of the channels go through the mixed ops (PC-DARTS: 4; others: 1)")
    net.add_argument("--edge-normalization", action=argparse.BooleanOptionalAction,
                     help="PC-DARTS' edge weights (betas), also used to rank edges in the final cell (PC-DARTS: on)")
    net.add_argument("--epochs", type=int, nargs="+", help="epochs per stage (P-DARTS: 25; DARTS: 50)")
    net.add_argument("--arch-frozen-epochs", type=int, nargs="+",
                     help="epochs at the start of each stage that train weights only (P-DARTS: 10; DARTS: 0)")
    net.add_argument("--skip-dropout", type=float, nargs="+",
                     help="initial skip-connect dropout per stage (P-DARTS CIFAR-10: 0.0 0.4 0.7, CIFAR-100: 0.1 0.2 0.3; "
                          "the authors' README command uses 0.1 0.4 0.7)")
    net.add_argument("--random-features", action=argparse.BooleanOptionalAction,
                     help="RF-DARTS: affine BatchNorm in the supernet, convolutions (and classifier) frozen at their "
                          "random initialisation (rf-darts, rf-pcdarts: on)")
    net.add_argument("--rf-train-classifier", action="store_true", default=None,
                     help="with --random-features, train the classifier too")
    net.add_argument("--keep-ops", type=int, nargs="*", help="ops each edge keeps after each stage but the last (P-DARTS: 5 3)")
    net.add_argument("--skip-limit", type=int, help="most skip-connects in the final normal cell (P-DARTS: 2)")
    net.add_argument("--add-op-epochs", type=int,
                     help="OPP-DARTS: epochs between two op additions; one op joins every edge at each (paper: 2)")
    net.add_argument("--opp-score-batches", type=int,
                     help="OPP-DARTS: score a candidate op on only the first N batches of the weight half "
                          "(default: all, as the paper)")
    net.add_argument("--opp-score-bn", choices=("train", "reference"),
                     help="OPP-DARTS: BatchNorm while scoring; train = batch statistics everywhere, running statistics "
                          "put back (default); reference = as the authors' code: trained cells use running statistics, "
                          "the new op and the stem batch statistics, and scoring updates the running statistics")
    net.add_argument("--drop-path", type=float,
                     help="RobustDARTS: drop-path on every mixed-edge output, ramped from 0 to P over each stage; also "
                          "ramps the probability of --cutout the same way (0 = off, the default)")

    w = p.add_argument_group("weight training")
    w.add_argument("--batch-size", type=int, help="batch per process (P-DARTS: 96, or 64 on 12 GB GPUs; DARTS: 64)")
    w.add_argument("--lr", type=float, help="SGD learning rate, cosine-annealed per stage (0.025)")
    w.add_argument("--lr-min", type=float, help="final learning rate of the cosine (P-DARTS: 0; DARTS: 0.001)")
    w.add_argument("--momentum", type=float, help="SGD momentum (0.9)")
    w.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                   help="Nesterov momentum (nb201: on, as NAS-Bench-201's DARTS runs; otherwise off)")
    w.add_argument("--weight-decay", type=float, help="SGD weight decay (3e-4; nb201: 5e-4)")
    w.add_argument("--grad-clip", type=float, help="gradient-norm clip of the weights (5)")

    a = p.add_argument_group("architecture training")
    a.add_argument("--arch-lr", type=float, help="Adam learning rate of the alphas (P-DARTS: 6e-4; DARTS: 3e-4)")
    a.add_argument("--arch-betas", type=float, nargs=2, help="Adam betas of the alphas (0.5 0.999)")
    a.add_argument("--arch-weight-decay", type=float, help="Adam weight decay of the alphas (1e-3)")
    a.add_argument("--arch-grad-clip", type=float, help="gradient-norm clip of the alphas, 0 = off (P-DARTS: 5; DARTS: 0)")
    a.add_argument("--unrolled", action="store_true", default=None,
                   help="second-order architecture gradient (DARTS' unrolled step); default first order")

    d = p.add_argument_group("data")
    d.add_argument("--train-portion", type=float, help="share of the training set that trains weights; the rest trains alphas (0.5)")
    d.add_argument("--cutout", type=int, help="cutout length, 0 = off (0)")
    d.add_argument("--train-limit", type=int, help="use only the first N training images")
    d.add_argument("--workers", type=int, help="data-loader processes (2)")
    d.add_argument("--valid-last", type=int,
                   help="validate on the architecture half only in the last N epochs of each stage (P-DARTS: 4; "
                        "DARTS: every epoch)")
    d.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels-last tensors (default: on for CPU, where it is several times faster; off for CUDA)")
    d.add_argument("--recompute", action=argparse.BooleanOptionalAction,
                   help="recompute each mixed edge's inner activations in the backward pass instead of storing them: "
                        "same results, several times less memory (default: on; the unrolled second-order step "
                        "always stores them; on CUDA its cost in time is not measured yet, see BENCHMARKS.md)")

    speed = p.add_argument_group("speed (the same search; see BENCHMARKS.md)")
    speed.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES,
                       help="torch.compile each search cell (fused kernels): 'default', or 'reduce-overhead' to replay "
                            "them as CUDA graphs (CUDA only). Cells are compiled once per stage and kind of pass (weight "
                            "step, architecture step, validation), minutes each on a CPU; search.log reports the time "
                            "apart from images/s (default: off)")
    speed.add_argument("--compile-backend", choices=BACKENDS,
                       help="inductor generates the kernels; aot_eager only traces them (to check a setup quickly) "
                            "(default: inductor)")
    speed.add_argument("--bf16", action="store_true", default=None,
                       help="bfloat16 autocast of the forward passes (default: off; results differ from float32 "
                            "beyond rounding)")
    return p


def default_out(config: SearchConfig) -> Path:
    return Path("runs") / f"{config.algorithm}-{config.dataset}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    run = {k: args.pop(k) for k in RUN_FLAGS}  # every other flag is None unless given: --resume names those it ignores

    def search() -> None:
        if run["resume"]:
            if run["out"] is None:
                raise SearchError("--resume needs --out RUN_FOLDER (the folder of the search to continue)")
            config = prepare_run_dir(run["out"], None, resume=True)
            given = sorted(k for k, v in args.items() if v is not None)
            if given:
                print(f"note: --resume uses the settings saved in {run['out']}; ignoring {', '.join(given)}", file=sys.stderr)
        else:
            named = {k: args.pop(k) or getattr(SearchConfig, k) for k in ("algorithm", "dataset", "preset")}
            config = resolve_config(**named, **args)
            if run["out"] is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise SearchError("under torchrun, give --out so that every process writes to the same folder")
            run["out"] = run["out"] or default_out(config)
            prepare_run_dir(run["out"], config, resume=False)
        search = Search(config, run["out"], resolve_device(run["device"]), progress=run["progress"])
        result = search.run()
        if search.ddp.main:
            print(result.genotype.to_string())

    return run_tool(search, (ConfigError, DataError, GenotypeError, SearchError),
                    lambda: f"continue with: tools/search.py --resume --out {run['out']}")


if __name__ == "__main__":
    sys.exit(main())

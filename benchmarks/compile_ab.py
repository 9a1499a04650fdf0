#!/usr/bin/env python
"""Eager against compiled search steps on a shared CPU: both in one process, steps interleaved (A, B, A, B, ...),
each timed in this process' CPU time (time.process_time), so that other jobs on the machine change the
figures less than wall time would. Prints one JSON line per step and a summary (median CPU ms per step).

  OMP_NUM_THREADS=1 python benchmarks/compile_ab.py --config pdarts-s3 --layers 5 --batch 64 --pairs 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_search import CONFIGS, SearchStep, Settings, batches, build_model, memory_format, search_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=CONFIGS, default="pdarts-s3")
    p.add_argument("--layers", type=int)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--pairs", type=int, default=5, help="timed (eager, compiled) pairs after one untimed pair")
    args = p.parse_args()
    torch.set_num_threads(1)
    settings = Settings("cpu", args.batch, args.channels, args.layers, 1)
    device = torch.device("cpu")
    steps, data = {}, batches(settings, device, memory_format("eager", device))
    for variant in ("eager", "compile"):
        model = build_model(args.config, variant, settings, device)
        steps[variant] = SearchStep(model, search_config(args.config), None)
    times: dict[str, list[float]] = {"eager": [], "compile": []}
    for pair in range(args.pairs + 1):
        for variant, step in steps.items():
            cpu, wall = time.process_time(), time.perf_counter()
            step(*data)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(json.dumps({"pair": pair, "variant": variant, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                              "load": os.getloadavg()[0]}), flush=True)
            if pair:  # the first pair compiles
                times[variant].append(cpu)
    eager, compiled = (statistics.median(times[v]) for v in ("eager", "compile"))
    print(json.dumps({"config": args.config, "layers": args.layers, "batch": args.batch, "eager_cpu_ms": 1000 * eager,
                      "compile_cpu_ms": 1000 * compiled, "speedup": eager / compiled}))


if __name__ == "__main__":
    main()

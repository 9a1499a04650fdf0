#!/usr/bin/env python
"""Transfer studies: train genotypes (and baselines) on tasks their search never saw, and compare them in one table.

Each (genotype or baseline, task) is a cell: a folder OUT/<name>/<task>/ holding the tool's own run folder run/,
command.sh (the exact command, runnable by hand), status.json and the tool's metrics.json. The study drives the
tools only through their command lines: tools/train_cifar.py, tools/train_imagenet.py, tools/train_reid.py and
mim train/test mmdet. COCO and ReID cells start from the ImageNet cell of the same row (it runs first), or from
--pretrained weights.

Examples:
  tools/transfer.py run --genotypes PDARTS,DARTS_V2,runs/my-search --tasks cifar10,imagenet,coco-retinanet,market1501 \\
      --baselines resnet50 --data-root /data --out studies/wild --preset paper --gpus 8
  tools/transfer.py run ... --dry-run              # write every cell's command.sh, run nothing
  tools/transfer.py run ... --launcher slurm       # one Slurm job per cell, afterok on its ImageNet cell
  tools/transfer.py status studies/wild            # what is done, running, failed, and why
  tools/transfer.py report studies/wild --markdown --plot wild.png
  tools/transfer.py list                           # genotypes, baselines, tasks, presets

Run the same command again after a kill: finished cells are skipped (their files untouched), an interrupted cell
resumes through its tool's own resume; --retry-failed runs failed cells again. Different arguments on the same
--out are refused.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from pdarts_wild.cli import ToolParser
from pdarts_wild.messages import problem
from pdarts_wild.zoo import available_genotypes
from studies import plan, report, results
from studies.errors import StudyError
from studies.launch import is_driven, run_local, study_lock
from studies.rows import BASELINES
from studies.settings import PRESETS, SHARED_KEYS
from studies.tasks import DATASETS, TASKS, TOOL_SCRIPTS

PLOT_FORMATS = (".png", ".svg", ".pdf")


def build_parser() -> argparse.ArgumentParser:
    p = ToolParser(prog="tools/transfer.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,status,report,list}")
    run = sub.add_parser("run", help="run (or continue) a study", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    what = run.add_argument_group("what to compare")
    what.add_argument("--genotypes", default="", help="comma-separated registry names (PDARTS, DARTS_V2, ...), "
                                                      "DARTS Genotype(...) strings, genotype.json files or search run "
                                                      "folders; a row each, named after it")
    what.add_argument("--baselines", default="", help=f"comma-separated reference networks, a row each: "
                                                      f"{', '.join(BASELINES)} (each ecosystem's own)")
    what.add_argument("--tasks", required=True, help=f"comma-separated: {', '.join(TASKS)}, or a ReID cross-dataset "
                                                     "task SOURCE>TARGET (e.g. market1501>dukemtmcreid)")
    data = run.add_argument_group("data and weights")
    data.add_argument("--data-root", type=Path,
                      help="each dataset where its tool expects it: ROOT/cifar-10-batches-py, "
                           "ROOT/imagenet/{train,val}, ROOT/coco/{annotations,train2017,val2017}, torchreid's "
                           "layouts under ROOT")
    data.add_argument("--data", action="append", default=[], metavar="DATASET=PATH",
                      help="one dataset elsewhere: PATH is the folder its tool reads (see `list`); repeatable")
    data.add_argument("--pretrained", action="append", default=[], metavar="NAME=FILE",
                      help="ImageNet weights for row NAME's COCO and ReID cells instead of its ImageNet cell; "
                           "repeatable")
    how = run.add_argument_group("settings")
    how.add_argument("--out", type=Path, required=True, help="the study folder; the same arguments continue it")
    how.add_argument("--preset", default="paper", choices=PRESETS,
                     help="paper: the tools' defaults, the papers' protocols; quick: minutes per cell on one GPU; "
                          "tiny: seconds per cell on a CPU (default: paper)")
    how.add_argument("--set", dest="sets", action="append", default=[], metavar="TASK.KEY=VALUE",
                     help="one setting of one task: a shared key (channels, cells, input_size, epochs, iters, batch, "
                          "batch_per_gpu, workers; see `list`) or one in its tool's own terms (imagenet.lr=0.2 -> "
                          "--lr 0.2; market1501.train.lr=3e-4; coco-retinanet.optim_wrapper.optimizer.lr=0.02)")
    launch = run.add_argument_group("launch")
    launch.add_argument("--gpus", type=int, default=1, help="GPUs per cell; 0 runs on the CPU (default: 1). "
                                                           "tools/train_reid.py uses one device whatever N is")
    launch.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: cells one after another here; slurm: a job per cell, submitted with submitit")
    launch.add_argument("--dry-run", action="store_true",
                        help="write study.json and every cell's command.sh, run nothing")
    launch.add_argument("--retry-failed", action="store_true", help="run failed cells again (they resume if they can)")
    launch.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    launch.add_argument("--time-min", type=int, default=4320,
                        help="Slurm time limit per job, minutes (default: 3 days)")
    launch.add_argument("--cpus-per-task", type=int, default=10, help="Slurm CPUs per job (default: 10)")
    for name, about in (("status", "what is done, running, failed, and why"), ("report", "the table and the plot")):
        q = sub.add_parser(name, help=about, description=about)
        q.add_argument("out", type=Path, help="the study folder")
        if name == "report":
            q.add_argument("--markdown", action="store_true", help="print the pivot as a Markdown table")
            q.add_argument("--plot", type=Path, help="save the proxy-vs-target plot here (a .png, .svg or .pdf "
                                                     "file); the report also writes results.csv and results.json")
    sub.add_parser("list", help="genotypes, baselines, tasks, datasets and presets")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": _run, "status": _status, "report": _report, "list": _list}[args.command](args)
    except StudyError as e:  # on one line, not clipped: it names the study's paths and what to do
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue", file=sys.stderr)
        return 130


def _say(text: str) -> None:
    print(text, flush=True)


def _run(args: argparse.Namespace) -> int:
    request = plan.Request(args.out, args.genotypes, args.baselines, args.tasks, args.data_root, tuple(args.data),
                           args.preset, tuple(args.sets), tuple(args.pretrained), args.gpus)
    study = plan.plan_study(request)
    if args.launcher == "slurm" and not args.dry_run and importlib.util.find_spec("submitit") is None:
        raise StudyError("--launcher slurm needs submitit: pip install -c constraints.txt -e '.[slurm]'")
    files = plan.render(study)
    plan.check_same(study)  # refused before the lock file is made; checked again under the lock
    with study_lock(study.out) as lock:
        plan.prepare(study, files)
        _say(f"study {study.out}: {len(study.rows)} rows x {len(study.tasks)} tasks = {len(study.cells)} cells")
        if args.dry_run:
            _say(f"dry run: each cell's command is in {study.out}/<row>/<task>/command.sh")
            return 0
        if args.launcher == "slurm":
            from studies import slurm

            options = slurm.SlurmOptions(args.partition, args.time_min, args.cpus_per_task)
            queued = slurm.submit(study, args.retry_failed, options, _say)
            _say(f"{queued} cells queued in Slurm; follow them with tools/transfer.py status {study.out}")
            return 0
        saved = plan.load_record(study.out)
        write_results = lambda: results.write(study.out, results.collect(study.out, saved))  # noqa: E731
        unfinished = run_local(study, lock, args.retry_failed, _say, write_results)
        write_results()
    _say(f"results: {study.out / 'results.csv'}; table: tools/transfer.py report {study.out} --markdown")
    if unfinished:
        _say(f"{unfinished} cells did not finish: tools/transfer.py status {study.out} says why")
    return 1 if unfinished else 0


def _status(args: argparse.Namespace) -> int:
    study = plan.load_record(args.out)
    print("\n".join(report.status_lines(args.out, study, is_driven(args.out))))
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.plot and args.plot.suffix.lower() not in PLOT_FORMATS:
        raise StudyError(f"--plot {args.plot}: name a {', '.join(PLOT_FORMATS)} file")
    if args.plot and not args.plot.expanduser().parent.is_dir():
        raise StudyError(f"--plot {args.plot}: no folder {args.plot.expanduser().parent}")
    study = plan.load_record(args.out)
    lines = results.collect(args.out, study)
    print(report.render(*report.pivot(lines, study), markdown=args.markdown))
    try:  # a study run by Slurm jobs gets its results files here
        results.write(args.out, lines)
    except OSError as e:
        print(f"results.csv not written: {problem(e)}", file=sys.stderr)
    if args.plot:
        report.plot(lines, study, args.plot.expanduser())
        print(f"plot: {args.plot}")
    return 0


def _list(args: argparse.Namespace) -> int:
    print("genotypes (or a genotype.json file, or a search run folder):", ", ".join(available_genotypes()))
    print("baselines (each ecosystem's own network; mmdet: detection_configs/*_<it>_fpn_1x_coco.py):",
          ", ".join(f"{name} ({', '.join(f'{k} {v}' for k, v in nets.items())})" for name, nets in BASELINES.items()))
    print("tasks (tool; shared keys for --set):")
    for task in TASKS.values():
        print(f"  {task.name:18} {TOOL_SCRIPTS[task.tool]}; {', '.join(SHARED_KEYS[task.tool])}")
    print("  SOURCE>TARGET      a ReID cross-dataset task, e.g. market1501>dukemtmcreid")
    print("datasets (--data DATASET=PATH; PATH is the folder the tool reads):")
    for name, spec in DATASETS.items():
        print(f"  {name:18} default ROOT{'/' + spec.default if spec.default else ''}: {spec.about}")
    print("presets:", ", ".join(PRESETS))
    for preset, tools in PRESETS.items():
        for tool, values in tools.items():
            print(f"  {preset:6} {tool:9} " + " ".join(f"{k}={v}" for k, v in values.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

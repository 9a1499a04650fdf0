"""Each cell's ``command.sh``: its tool's exact command line, runnable by hand, resuming through the tool's own resume.

Every script ``cd``s into its cell, runs the tool with the cell's ``run/`` as the tool's run folder (``--out``,
``data.save_dir``, ``--work-dir``), picks the tool's resume when ``run/`` holds an interrupted run, and copies the
``metrics.json`` the tool wrote into the cell. Run again after that, it only copies the file again.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from . import detection
from .grid import Cell, Env
from .rows import BASELINES, GENOTYPE
from .settings import TaskSettings
from .tasks import CLASSIFICATION, DETECTION, IMAGENET, REID

RUN = "run"                 # the tool's own run folder inside the cell
AUX_SIZES = (224, 256)      # the DARTS auxiliary head's input sizes (tools/train_imagenet.py)


def command_script(cell: Cell, settings: TaskSettings, data: dict[str, Path], env: Env) -> str:
    """The whole ``command.sh`` of ``cell``."""
    build = {CLASSIFICATION: _classification, IMAGENET: _classification, REID: _reid, DETECTION: _detection}
    body, metrics = build[cell.task.tool](cell, settings, data, env)
    path = f"{RUN}/{metrics}"
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# {cell.row.name} x {cell.task.name}: a cell of the transfer study in {cell.folder.parents[1]}",
        "# (tools/transfer.py). Runnable by hand; run it again after a kill and the tool resumes its run.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f"export PYTHONPATH={shlex.quote(str(env.repo))}" + "${PYTHONPATH:+:$PYTHONPATH}",
        f"export PATH={shlex.quote(str(env.python.parent))}:$PATH",
        *(["export CUDA_VISIBLE_DEVICES=  # --gpus 0: CPU only"] if env.gpus == 0 else []),
        "",
        body,
        "",
        f"if [ ! -s {path} ]; then",
        f'  echo "error: the tool exited 0 but wrote no {path}" >&2',
        "  exit 1",
        "fi",
        f"cp {path} metrics.json.tmp && mv metrics.json.tmp metrics.json",
        "",
    ])


Word = str | Path | int


def _line(args: list[Word | tuple[Word, ...]], extra: str = "") -> str:
    """One shell command line, wrapped between arguments; a tuple (a flag and its value, a KEY VALUE pair) stays
    on one line."""
    units = [" ".join(shlex.quote(str(w)) for w in (a if isinstance(a, tuple) else (a,))) for a in args]
    lines, current = [], units[0]
    for unit in units[1:]:
        if len(current) + len(unit) > 100:
            lines.append(current + " \\")
            current = "    " + unit
        else:
            current += " " + unit
    return "\n".join([*lines, current + extra])


def _pairs(*words: Word) -> list[tuple[Word, Word]]:
    """``a, 1, b, 2`` as the units ``(a, 1), (b, 2)``."""
    return list(zip(words[::2], words[1::2]))


def _python(env: Env, script: str) -> list[str | Path]:
    """The train tools under N > 1 GPUs run under torchrun (one process per GPU), else as one process."""
    if env.gpus > 1:
        return [env.bin("torchrun"), "--standalone", f"--nproc_per_node={env.gpus}", env.repo / script]
    return [env.python, env.repo / script]


def _flags(raw: list[tuple[str, str | None]]) -> list[tuple[str, ...]]:
    """``--set`` settings for an argparse tool: ``--key value``, or the switch ``--key``."""
    args: list[tuple[str, ...]] = []
    for key, value in raw:
        flag = key if key.startswith("-") else "--" + key.replace("_", "-")
        args.append((flag,) if value is None else (flag, value))
    return args


def _classification(cell: Cell, s: TaskSettings, data: dict[str, Path], env: Env) -> tuple[str, str]:
    """tools/train_cifar.py or tools/train_imagenet.py; ``--resume`` continues from the run's checkpoint.pt."""
    v, task = s.values, cell.task
    if task.tool == IMAGENET:
        args = [*_python(env, "tools/train_imagenet.py"),
                *_pairs("--data", data["imagenet"], "--input-size", v["input_size"][0])]
    else:
        args = [*_python(env, "tools/train_cifar.py"), *_pairs("--dataset", task.target, "--data", data[task.target])]
    args += [*_pairs("--out", RUN, "--epochs", v["epochs"], "--batch-size", v["batch"], "--workers", v["workers"]),
             "--no-progress"]
    if env.gpus == 0:
        args += _pairs("--device", "cpu")
    if cell.row.kind == GENOTYPE:
        args += _pairs("--genotype", cell.row.spec, "--init-channels", v["channels"], "--layers", v["cells"])
        if task.tool == IMAGENET and v["input_size"][0] not in AUX_SIZES:
            args += _pairs("--auxiliary-weight", 0)  # the auxiliary head pools a 224 (or 256) input's 7x7 map
    else:
        args += _pairs("--model", BASELINES[cell.row.name]["timm"])
    args += _flags(s.raw)
    body = "\n".join([
        f"if [ ! -e {RUN}/model_final.pth ]; then  # written last: the tool's mark of a finished run",
        "  resume=()",
        f"  if [ -e {RUN}/config.json ]; then resume=(--resume); fi  # interrupted: continue from its checkpoint.pt",
        _indent(_line(args, ' "${resume[@]}"')),
        "fi",
    ])
    return body, "metrics.json"


def _reid(cell: Cell, s: TaskSettings, data: dict[str, Path], env: Env) -> tuple[str, str]:
    """tools/train_reid.py (one process, one device: torchreid's engine); ``model.resume`` continues from the last
    torchreid checkpoint; a run that wrote none is kept aside as ``run.attempt-TIME`` and started anew."""
    v, (source, target) = s.values, (cell.task.datasets[0], cell.task.target)
    args: list = [env.python, env.repo / "tools/train_reid.py", *_pairs(
        "--config", env.repo / f"reid_configs/{source}_softmax.yaml", "--root", data[source], "data.save_dir", RUN,
        "data.sources", f'["{source}"]', "data.targets", f'["{target}"]', "data.height", v["input_size"][0],
        "data.width", v["input_size"][1], "train.max_epoch", v["epochs"], "train.batch_size", v["batch"],
        "data.workers", v["workers"])]
    if cell.row.kind == GENOTYPE:
        args += _pairs("model.name", "pdarts_reid", "model.genotype", cell.row.spec, "model.init_channels",
                       v["channels"], "model.layers", v["cells"])
    else:
        args += _pairs("model.name", BASELINES[cell.row.name]["torchreid"])
    args += _pairs("model.pretrained", "True", "model.pretrained_path", cell.weights)
    if env.gpus == 0:
        args += _pairs("use_gpu", "False")
    args += [(key, "True" if value is None else value) for key, value in s.raw]
    one_device = ["# torchreid's engine trains on one device, whatever the study's --gpus"] if env.gpus > 1 else []
    body = "\n".join([
        *one_device,
        f"if [ ! -e {RUN}/metrics.json ]; then",
        "  resume=()",
        f"  last=$(ls -v {RUN}/model/model.pth.tar-* 2>/dev/null | grep -E -- '-[0-9]+$' | tail -n 1 || true)",
        '  if [ -n "$last" ]; then resume=(model.resume "$last")  # interrupted: continue from its last checkpoint',
        f'  elif [ -e {RUN} ]; then  # nothing to resume: kept aside',
        f'    mv {RUN} "{RUN}.attempt-$(date +%Y%m%d-%H%M%S)"',
        "  fi",
        _indent(_line(args, ' "${resume[@]}"')),
        "fi",
    ])
    return body, "metrics.json"


def _detection(cell: Cell, s: TaskSettings, data: dict[str, Path], env: Env) -> tuple[str, str]:
    """``mim train mmdet`` (``--resume``: MMEngine's last_checkpoint) then ``mim test mmdet`` on the last checkpoint;
    the cell's ``config.py`` holds everything else."""
    final = f"{RUN}/{detection.final_checkpoint(s.values)}"
    launch = _pairs("--launcher", "pytorch" if env.gpus > 1 else "none", "--gpus", env.gpus)
    train = [env.bin("mim"), "train", "mmdet", detection.CONFIG, *_pairs("--work-dir", RUN), *launch, "--auto-scale-lr"]
    test = [env.bin("mim"), "test", "mmdet", detection.CONFIG, *_pairs("--checkpoint", final, "--work-dir",
                                                                          f"{RUN}/test"), *launch]
    body = "\n".join([
        f"if [ ! -e {RUN}/test/metrics.json ]; then",
        f"  if [ ! -e {final} ]; then",
        "    resume=()",
        f"    if [ -e {RUN} ]; then resume=(--resume); fi  # interrupted: MMEngine resumes from its last_checkpoint",
        _indent(_line(train, ' "${resume[@]}"'), 4),
        "  fi",
        _indent(_line(test)),
        "fi",
    ])
    return body, "test/metrics.json"


def _indent(text: str, spaces: int = 2) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())

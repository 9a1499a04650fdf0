"""Bad files and folders given to the real tools: one ``error:`` line of at most 200 characters that names the
file, exit code 2, no traceback, nothing run from a hostile file, and earlier outputs intact.

The tools run in-process through their ``main(argv)`` on tiny runs (a 1-epoch CIFAR training of 3 cells at
C=4 takes well under a second; the interrupted DARTS search about 4 s). About 25 s in all.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from datagen import py2_pickle, write_cifar10

from pdarts_wild import files
from pdarts_wild.checkpoints import read_checkpoint
from pdarts_wild.genotype import GenotypeError
from pdarts_wild.messages import error_line as tool_error_line
from pdarts_wild.safe_pickle import PickleRefused, loads_plain
from pdarts_wild.zoo import resolve_genotype

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import export_onnx  # noqa: E402
import model_info  # noqa: E402
import search as search_tool  # noqa: E402
import train_cifar  # noqa: E402

SEARCH = ["--dataset", "digits", "--preset", "tiny", "--algorithm", "darts", "--device", "cpu", "--no-progress"]
TRAIN = ["--device", "cpu", "--no-progress", "--workers", "0", "--init-channels", "4", "--layers", "3",
         "--batch-size", "16", "--epochs", "1"]


class RunsCode:
    """Pickles as ``os.system("touch MARKER")``: loading it with plain pickle would create the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The file a hostile pickle would create; asserted absent after each test that uses it."""
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a hostile file ran code"


def error_line(capsys: pytest.CaptureFixture[str], *names: object, alone: bool = True) -> str:
    """The tool's ``error:`` line, checked: its last stderr line (its only one when ``alone``), at most 200
    characters, naming each of ``names``, and no traceback anywhere."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "Traceback" not in err, err
    assert len(lines) == 1 or not alone, err
    line = lines[-1]
    assert line.startswith("error: ") and len(line) <= 200, line
    for name in names:
        assert str(name) in line, line
    return line


# Ways a checkpoint file goes bad; each writes ``path`` (a good checkpoint to start from) in its own way.
def _truncated(path: Path, marker: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _hostile_zip(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {}, "payload": RunsCode(marker)}, path)


def _undecodable(path: Path, marker: Path) -> None:
    """A python-2 string weights-only loading cannot decode, then code: torchreid's loader retries such a file
    with ``weights_only=False``."""
    path.write_bytes(b"\x80\x02U\x01\xff0" + pickle.dumps(RunsCode(marker), protocol=2)[2:])


BAD_CHECKPOINTS: dict[str, Callable[[Path, Path], None]] = {
    "truncated": _truncated,
    "empty": lambda path, marker: path.write_bytes(b""),
    "not-torch": lambda path, marker: path.write_bytes(b"weights, honestly\n"),
    "hostile-zip": _hostile_zip,
    "hostile-pickle": lambda path, marker: path.write_bytes(pickle.dumps(RunsCode(marker), protocol=2)),
    "undecodable": _undecodable,
    "a-tensor": lambda path, marker: torch.save(torch.zeros(3), path),
    "a-folder": lambda path, marker: (path.unlink(), path.mkdir()),
}
EXPECTED = {"truncated": "truncated", "empty": "corrupt", "not-torch": "corrupt", "hostile-zip": "posix.system",
            "hostile-pickle": "posix.system", "undecodable": "corrupt", "a-tensor": "holds a Tensor",
            "a-folder": "is a folder"}


# ------------------------------------------------------------------------------------------ search


@pytest.fixture(scope="module")
def stopped_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DARTS search stopped (as by Ctrl-C) after its first epoch: checkpoint.pt holds the supernet."""
    from pdarts_wild.search import Search

    out = tmp_path_factory.mktemp("search") / "run"
    real = Search._run_epoch
    Search._run_epoch = lambda self, stage, state: (real(self, stage, state) if state["epoch"] == 0
                                                    else (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        assert search_tool.main([*SEARCH, "--out", str(out)]) == 130
    finally:
        Search._run_epoch = real
    return out


def copied(run: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A copy of ``run`` and the bytes of each of its files, to check later that nothing was changed."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out, {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def unchanged(out: Path, before: dict[str, bytes], *but: str) -> None:
    for name, data in before.items():
        if name not in but:
            assert (out / name).read_bytes() == data, name


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_search_resume_from_a_bad_checkpoint(kind: str, stopped_search: Path, tmp_path: Path, marker: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out, before = copied(stopped_search, tmp_path)
    capsys.readouterr()  # the search's own output
    BAD_CHECKPOINTS[kind](out / "checkpoint.pt", marker)
    assert search_tool.main(["--resume", "--out", str(out)]) == 2
    assert EXPECTED[kind] in error_line(capsys, out / "checkpoint.pt")
    unchanged(out, before, "checkpoint.pt")


def test_search_resume_from_a_checkpoint_of_another_size(stopped_search: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out, before = copied(stopped_search, tmp_path)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    saved["model"] = {k: torch.zeros(2, *v.shape) for k, v in saved["model"].items()}  # as a wider supernet's
    torch.save(saved, out / "checkpoint.pt")
    assert search_tool.main(["--resume", "--out", str(out)]) == 2
    line = error_line(capsys, out / "checkpoint.pt", alone=False)  # after the "resuming ..." progress line
    assert "does not match this network" in line
    unchanged(out, before, "checkpoint.pt", "search.log")


def test_search_resume_with_a_corrupt_config(stopped_search: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out, before = copied(stopped_search, tmp_path)
    (out / "config.json").write_text('{"algorithm": "darts", "layers": ')
    assert search_tool.main(["--resume", "--out", str(out)]) == 2
    assert "no usable search settings" in error_line(capsys, out / "config.json")
    unchanged(out, before, "config.json")


@pytest.mark.parametrize("where", ["file", "inside-a-file"])
def test_out_where_a_file_is(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me\n")
    out = taken if where == "file" else taken / "run"
    for main, args in ((search_tool.main, SEARCH), (train_cifar.main, TRAIN)):
        assert main([*args, "--out", str(out)]) == 2
        assert "is a file" in error_line(capsys, taken)
    assert taken.read_text() == "keep me\n"


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "mps"])
def test_device_that_is_not_one(device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for main, args in ((search_tool.main, SEARCH), (train_cifar.main, TRAIN)):
        assert main([*args, "--device", device, "--out", str(tmp_path / "x")]) == 2
        assert error_line(capsys) == f"error: --device {device!r} is not one of cpu, cuda, cuda:N"
    assert not (tmp_path / "x").exists()


def test_device_beyond_the_visible_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert train_cifar.main([*TRAIN, "--device", "cuda:2", "--out", str(tmp_path / "x")]) == 2
    assert error_line(capsys) == "error: --device cuda:2: PyTorch sees 2 GPU(s), cuda:0 to cuda:1"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert search_tool.main([*SEARCH, "--out", str(locked / "run")]) == 2
        assert "Permission denied" in error_line(capsys, locked / "run")
    finally:
        locked.chmod(0o755)


# ------------------------------------------------------------------------------------------ CIFAR pickles


def _object_array(marker: Path) -> bytes:
    return py2_pickle({b"data": np.array([b"x", 1], dtype=object), b"labels": [0, 1]})


HOSTILE_BATCHES: dict[str, Callable[[Path], bytes]] = {
    "runs-code": lambda marker: pickle.dumps(RunsCode(marker), protocol=2),
    "runs-code-inside": lambda marker: pickle.dumps({"data": RunsCode(marker)}, protocol=2),
    "builtins-eval": lambda marker: pickle.dumps({"x": eval}, protocol=2),
    "object-array": _object_array,
}


@pytest.mark.parametrize("name", ["data_batch_2", "batches.meta"])
@pytest.mark.parametrize("kind", HOSTILE_BATCHES)
def test_hostile_cifar_batch_runs_nothing(kind: str, name: str, tmp_path: Path, marker: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    write_cifar10(tmp_path / "data", n_train=20, n_test=10)
    batch = tmp_path / "data" / "cifar-10-batches-py" / name
    batch.write_bytes(HOSTILE_BATCHES[kind](marker))
    out = tmp_path / "run"
    assert search_tool.main(["--dataset", "cifar10", "--data", str(tmp_path / "data"), "--preset", "tiny",
                             "--out", str(out)]) == 2
    assert "refused" in error_line(capsys, name)
    assert not out.exists()


def test_official_cifar_pickles_load_and_nothing_else() -> None:
    """The globals of the official files (python 2, numpy.core) and of numpy 2 re-pickles are admitted; the
    values are plain data."""
    rows = np.arange(12, dtype=np.uint8).reshape(2, 6)
    official = loads_plain(py2_pickle({b"data": rows, b"labels": [3, 4], b"batch_label": b"batch 1"}))
    assert official["batch_label"] == "batch 1" and official["labels"] == [3, 4]
    np.testing.assert_array_equal(official["data"], rows)
    assert b"numpy.core.multiarray\n_reconstruct" in py2_pickle(rows)
    np.testing.assert_array_equal(loads_plain(pickle.dumps({"data": rows}, protocol=4))["data"], rows)
    for value, named in ((np.float32(1), "numpy._core.multiarray.scalar"), (Path("x"), "pathlib"),
                         (torch.zeros(1), "torch")):
        with pytest.raises(PickleRefused, match=named):
            loads_plain(pickle.dumps(value, protocol=2))


# ------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def cifar_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("cifar"), n_train=32, n_test=16)


@pytest.fixture(scope="module")
def trained(cifar_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``trained(*flags)``: the folder of a finished 1-epoch tiny training with those flags (made once)."""
    runs: dict[tuple[str, ...], Path] = {}

    def run(*flags: str) -> Path:
        if flags not in runs:
            out = tmp_path_factory.mktemp("train") / "run"
            assert train_cifar.main([*TRAIN, *flags, "--data", str(cifar_data), "--out", str(out)]) == 0
            runs[flags] = out
        return runs[flags]

    return run


def unfinished(run: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A copy of a finished training without its model_final.pth: one that ``--resume`` continues."""
    out, before = copied(run, tmp_path)
    (out / "model_final.pth").unlink()
    return out, before


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_training_resume_from_a_bad_checkpoint(kind: str, trained: Callable[..., Path], tmp_path: Path,
                                               marker: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, before = unfinished(trained(), tmp_path)
    capsys.readouterr()  # the training's own output
    BAD_CHECKPOINTS[kind](out / "checkpoint.pt", marker)
    assert train_cifar.main(["--resume", "--out", str(out)]) == 2
    assert EXPECTED[kind] in error_line(capsys, out / "checkpoint.pt")
    unchanged(out, before, "checkpoint.pt", "model_final.pth")


@pytest.mark.parametrize("flags", [("--init-channels", "8"), ("--genotype", "DARTS_V2")],
                         ids=["other-size", "other-genotype"])
def test_training_resume_from_another_networks_checkpoint(flags: tuple[str, ...], trained: Callable[..., Path],
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, before = unfinished(trained(), tmp_path)
    shutil.copy(trained(*flags) / "checkpoint.pt", out / "checkpoint.pt")
    capsys.readouterr()  # the trainings' own output
    assert train_cifar.main(["--resume", "--out", str(out)]) == 2
    assert "does not match this network" in error_line(capsys, out / "checkpoint.pt")
    unchanged(out, before, "checkpoint.pt", "model_final.pth")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_training_resume_from_an_unreadable_checkpoint(trained: Callable[..., Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = unfinished(trained(), tmp_path)
    capsys.readouterr()  # the training's own output
    (out / "checkpoint.pt").chmod(0)
    try:
        assert train_cifar.main(["--resume", "--out", str(out)]) == 2
        assert "Permission denied" in error_line(capsys, out / "checkpoint.pt")
    finally:
        (out / "checkpoint.pt").chmod(0o644)


def test_full_disk_while_writing_a_checkpoint_keeps_the_last_good_one(
        cifar_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The second epoch's checkpoint.pt fails half-written (ENOSPC): the first epoch's stays whole and resumes."""
    real_open = open
    writes = {"checkpoint.pt.tmp": 0}

    class FillsUp:
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self) -> "FillsUp":
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            self.handle.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> object:
            return getattr(self.handle, name)

    def open_filling_up(path: Path, mode: str = "r", *args: object, **kwargs: object):
        handle = real_open(path, mode, *args, **kwargs)
        if Path(path).name in writes:
            writes[Path(path).name] += 1
            if writes[Path(path).name] == 2:
                return FillsUp(handle)
        return handle

    monkeypatch.setattr(files, "open", open_filling_up, raising=False)
    out = tmp_path / "run"
    args = [*TRAIN, "--epochs", "2", "--data", str(cifar_data), "--out", str(out)]
    assert train_cifar.main(args) == 2
    line = error_line(capsys, out / "checkpoint.pt", alone=False)
    assert "No space left on device" in line and "intact" in line
    assert not (out / "checkpoint.pt.tmp").exists() and not (out / "model_final.pth").exists()
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # the last good checkpoint, whole

    monkeypatch.undo()
    assert train_cifar.main(["--resume", "--out", str(out)]) == 0
    assert read_checkpoint(out / "model_final.pth")["epoch"] == 2


def test_full_disk_while_logging_is_one_error_naming_the_log(tmp_path: Path) -> None:
    """logging would print a traceback for a failed write and go on; the run's log file stops it instead."""
    from pdarts_wild.search_outputs import log, log_to

    class FullDisk:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self) -> None:
            pass

    with log_to(tmp_path / "train.log", True):
        handler = next(h for h in log.handlers if isinstance(h, logging.FileHandler))
        handler.stream, stream = FullDisk(), handler.stream
        try:
            with pytest.raises(OSError) as info:
                log.info("epoch 1")
        finally:
            handler.stream = stream
    assert info.value.filename == str(tmp_path / "train.log") and info.value.errno == errno.ENOSPC


def test_atomic_write_keeps_the_previous_file_when_a_write_fails(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    files.atomic_write(path, b"good")
    monkeypatch.setattr(files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error") as info:
        files.atomic_write(path, b"new and longer")
    assert info.value.filename == str(path) and path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


# ------------------------------------------------------------------------------------------ export


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_export_with_a_bad_checkpoint(kind: str, trained: Callable[..., Path], tmp_path: Path, marker: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "model.pth"
    shutil.copy(trained() / "model_final.pth", checkpoint)
    capsys.readouterr()  # the training's own output
    BAD_CHECKPOINTS[kind](checkpoint, marker)
    onnx = tmp_path / "model.onnx"
    assert export_onnx.main(["pdarts_c10", "--checkpoint", str(checkpoint), "--out", str(onnx)]) == 2
    assert EXPECTED[kind] in error_line(capsys, checkpoint)
    assert not onnx.exists()


def test_export_with_a_checkpoint_of_another_genotype(trained: Callable[..., Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = trained() / "model_final.pth"
    capsys.readouterr()  # the training's own output
    assert export_onnx.main(["darts_v2_c10", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "does not match this network" in error_line(capsys, checkpoint)


def test_export_takes_the_network_settings_from_the_checkpoint(trained: Callable[..., Path]) -> None:
    """The tiny run's model_args (C=4, 3 cells) build the network: no --channels / --layers needed (the ONNX
    export itself is tests/test_export.py's)."""
    checkpoint = trained() / "model_final.pth"
    model = export_onnx.build_model("pdarts_c10", checkpoint=str(checkpoint))
    saved = read_checkpoint(checkpoint)
    assert saved["model_args"]["C"] == 4 and len(model.cells) == saved["model_args"]["layers"] == 3
    assert not model.training and set(model.state_dict()) == set(saved["state_dict"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key]), key


@pytest.mark.parametrize("where", ["a-folder", "in-no-folder"])
def test_export_out_that_cannot_be_written(where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path if where == "a-folder" else tmp_path / "missing" / "x.onnx"
    assert export_onnx.main(["pdarts_c10", "--channels", "4", "--layers", "3", "--out", str(out)]) == 2
    error_line(capsys, out)


# ------------------------------------------------------------------------------------------ names


def test_error_line_of_a_data_loader_worker_is_the_workers_last_line() -> None:
    """DataLoader re-raises a worker's error with the worker's traceback in its message."""
    err = OSError("Caught OSError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                  '  File "x.py", line 1, in f\nOSError: cannot identify image file \'/data/val/n1/x.JPEG\'\n')
    assert tool_error_line(err) == "error: OSError: cannot identify image file '/data/val/n1/x.JPEG'"
    assert tool_error_line(ValueError("a" * 500)) == "error: " + "a" * 190 + "..."


def test_unknown_names_suggest_the_closest_and_how_to_list_all(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(GenotypeError, match=r"closest: PDARTS.*all: tools/model_info.py --list"):
        resolve_genotype("PDART")
    assert train_cifar.main([*TRAIN, "--model", "pdarts_c1", "--out", str(tmp_path / "x")]) == 2
    line = error_line(capsys, "'pdarts_c1'", "tools/model_info.py --list")
    assert "closest: pdarts_c10, pdarts_c100" in line
    assert model_info.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "PC_DARTS_cifar" in listed and "pdarts_imagenet" in listed and "darts_v2_reid" in listed


def test_hostile_genotype_is_data_not_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    genotype = tmp_path / "genotype.txt"
    genotype.write_text("Genotype(normal=__import__('os').system('touch MARKER'))")
    assert model_info.main([str(genotype), "--net", "cifar"]) == 2
    error_line(capsys, genotype)
    assert not (tmp_path / "MARKER").exists() and not Path("MARKER").exists()



# ------------------------------------------------------------------------------------------ torchreid, MMDetection

REID_OPTS = ["model.init_channels", "8", "model.layers", "5", "data.height", "64", "data.width", "32",
             "data.workers", "0", "train.max_epoch", "1", "train.batch_size", "8", "test.ranks", "[1, 5]"]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datagen import write_market1501

    root = tmp_path_factory.mktemp("reid")
    write_market1501(root)
    return root


def reid_checkpoint(path: Path, **settings: object) -> Path:
    """A torchreid checkpoint (as its Engine saves one) of a tiny PDARTSReID over 6 identities."""
    from backbones.torchreid_pdarts import PDARTSReID

    torch.save({"state_dict": PDARTSReID(6, init_channels=8, layers=5, **settings).state_dict(), "epoch": 1}, path)
    return path


@pytest.mark.parametrize("key", ["model.pretrained_path", "model.load_weights", "model.resume"])
@pytest.mark.parametrize("kind", ["hostile-zip", "undecodable", "truncated", "other-genotype"])
def test_reid_weights_that_cannot_be_used(key: str, kind: str, market: Path, tmp_path: Path, marker: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import train_reid  # torchreid: imported only here

    path = reid_checkpoint(tmp_path / "weights.pth", genotype="DARTS_V2" if kind == "other-genotype" else "PDARTS")
    if kind != "other-genotype":
        BAD_CHECKPOINTS[kind](path, marker)
    flags = ["--test-only"] if key == "model.load_weights" else []
    pretrained = "True" if key == "model.pretrained_path" else "False"
    save = tmp_path / "run"
    code = train_reid.main(["--config", str(ROOT / "reid_configs" / "market1501_softmax.yaml"), "--root", str(market),
                            *flags, *REID_OPTS, "data.save_dir", str(save), "model.pretrained", pretrained, key, str(path)])
    assert code == 2
    line = error_line(capsys, path)
    assert ("does not match this network" if kind == "other-genotype" else EXPECTED[kind]) in line
    assert not (save / "model").exists()


@pytest.mark.parametrize("kind", ["hostile-zip", "undecodable", "truncated", "a-folder"])
def test_mmdet_init_cfg_checkpoint_that_cannot_be_used(kind: str, tmp_path: Path, marker: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """MMEngine reports the exception itself: its message, the traceback's last line, names file and problem."""
    from mmdet.registry import MODELS

    import backbones.mmdet_pdarts  # noqa: F401  (registers PDARTSNet)
    from pdarts_wild.checkpoints import CheckpointError

    monkeypatch.chdir(tmp_path)  # a short path, whatever the temporary folder's: the message holds it whole
    path = Path("imagenet.pth")
    torch.save({"state_dict": {}}, path)
    BAD_CHECKPOINTS[kind](path, marker)
    backbone = MODELS.build(dict(type="PDARTSNet", init_channels=8, layers=5,
                                 init_cfg=dict(type="Pretrained", checkpoint=str(path))))
    with pytest.raises(CheckpointError) as info:
        backbone.init_weights()
    message = str(info.value)
    assert str(path) in message and EXPECTED[kind] in message and "\n" not in message and len(message) <= 200


@pytest.mark.parametrize("net", ["cifar", "nb201"])
def test_deeply_nested_genotype_json(net: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    genotype = tmp_path / "genotype.json"
    genotype.write_text('{"version": 1, "space": "nb201", "genotype": ' + "[" * 100_000)  # json.loads: RecursionError
    assert model_info.main([str(genotype), "--net", net]) == 2
    error_line(capsys, genotype)


# ------------------------------------------------------------------------------------------ search: edited files


@pytest.mark.parametrize("edit, problem", [
    ({"lr": "0.1"}, "lr: expected a number, got '0.1'"),
    ({"seed": "x"}, "seed: expected an integer, got 'x'"),
    ({"batch_size": 16.5}, "batch_size: expected an integer, got 16.5"),
    ({"workers": "2"}, "workers: expected an integer, got '2'"),
    ({"arch_betas": [0.5]}, "arch_betas: expected 2 numbers, got [0.5]"),
    ({"train_limit": 64.5}, "train_limit: expected an integer, got 64.5"),
    ({"cutout": 2.5}, "cutout: expected an integer, got 2.5"),
    ({"layers": [3, "4"]}, "layers: expected a list of integers, got [3, '4']"),
    ({"unrolled": 1}, "unrolled: expected true or false, got 1"),
    ({"steps": 0}, "steps: the cells of space darts have 4 nodes, got 0"),
    ({"steps": 7}, "steps: the cells of space darts have 4 nodes, got 7"),
    ({"layers": []}, "--layers needs at least one value (cells per stage)"),
    ({"momentum": -1.0}, "--momentum must be in [0, 1), got -1.0"),
])
def test_search_resume_with_a_config_of_wrong_values(edit: dict, problem: str, stopped_search: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A hand-edited config.json: ZeroDivisionError, IndexError, TypeError... on --resume before."""
    out, before = copied(stopped_search, tmp_path)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **edit}))
    capsys.readouterr()  # the search's own output
    assert search_tool.main(["--resume", "--out", str(out)]) == 2
    assert error_line(capsys) == f"error: {out / 'config.json'} holds no usable search settings ({problem})"
    unchanged(out, before, "config.json")


@pytest.mark.parametrize("text, problem", [
    ('{"lr": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deeply"),
    ("[1, 2]", "expected an object of settings, got list"),
])
def test_search_resume_with_a_config_that_is_no_settings(text: str, problem: str, stopped_search: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out, before = copied(stopped_search, tmp_path)
    (out / "config.json").write_text(text)
    capsys.readouterr()
    assert search_tool.main(["--resume", "--out", str(out)]) == 2
    assert error_line(capsys) == f"error: {out / 'config.json'} holds no usable search settings ({problem})"
    unchanged(out, before, "config.json")


NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.mark.parametrize("args", [["PDARTS", "--net", "cifar", "--num-classes", "-3"],
                                  [NB201, "--net", "nb201", "--num-classes", "-5"],
                                  ["PDARTS", "--net", "imagenet", "--num-classes", "0"]])
def test_model_info_refuses_class_counts_below_one(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:  # the parser's one error line
        model_info.main(args)
    assert info.value.code == 2
    assert capsys.readouterr().err == (f"error: argument --num-classes: must be a positive integer, got {args[-1]} "
                                       "(see tools/model_info.py --help)\n")


@pytest.mark.parametrize("args, message", [
    ([NB201, "--net", "nb201", "--layers", "1", "--input-size", "1"], "an --input-size that is a multiple of 4"),
    ([NB201, "--net", "nb201", "--input-size", "6"], "an --input-size that is a multiple of 4"),  # was broadcast
    (["PDARTS", "--net", "imagenet", "--channels", "1"], "--channels of at least 2, got 1"),
    (["PDARTS", "--net", "cifar", "--input-size", "30"], "multiples of 4"),
])
def test_model_info_refuses_sizes_the_network_cannot_take(args: list[str], message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert model_info.main(args) == 2
    assert message in error_line(capsys)


def _at_the_end_without_alphas(saved: dict) -> None:
    """As if stage 1 (DARTS' only one) had ended, but without the alphas the result is derived from."""
    for key in ("model", "w_opt", "a_opt", "scheduler"):
        del saved[key]
    saved.update(stage=1, epoch=0)


TAMPERED: dict[str, tuple[Callable[[dict], None], str]] = {
    # an epoch past its stage's never ended; a stage past the plan "finished" with made-up results
    "epoch-99": (lambda s: s.update(epoch=99), "epoch index 99 is outside 0..1 of stage index 0"),
    "step-negative": (lambda s: s.update(step=-5), "step -5 is negative"),
    "stage-99": (lambda s: s.update(stage=99), "stage index 99 is outside 0..1"),
    "stage--1": (lambda s: s.update(stage=-1), "stage index -1 is outside 0..1"),
    "stage-str": (lambda s: s.update(stage="1"), "stage: expected an integer, got '1'"),
    "no-model": (lambda s: s.pop("model"), "a checkpoint at epoch index 1 lacks the supernet"),
    "candidates-none": (lambda s: s.update(candidates=None), "its candidate ops are no darts cells' ops"),
    "unknown-op": (lambda s: s["candidates"]["normal"].__setitem__(3, ("none", "conv_9x9")),
                   "its candidate ops are no darts cells' ops"),
    "end-without-alphas": (_at_the_end_without_alphas, "last_alphas do not fit stage index 1 of this search"),
    "history-cut": (lambda s: s.update(history=[]), "its history, stage genotypes or op growth do not fit"),
    "rng-empty": (lambda s: s.update(rng={}), "does not fit this run: it lacks 'torch'"),
    "rng-size": (lambda s: s["rng"].update(torch=torch.zeros(3, dtype=torch.uint8)),
                 "does not fit this run (Expected a CPUGeneratorImplState"),  # torch's message, clipped with long paths
}


@pytest.mark.parametrize("kind", TAMPERED)
def test_search_resume_from_a_tampered_checkpoint(kind: str, stopped_search: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A well-formed checkpoint.pt (read weights-only) whose loop state is not this run's: one line, nothing run."""
    out, before = copied(stopped_search, tmp_path)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    tamper, problem = TAMPERED[kind]
    tamper(saved)
    torch.save(saved, out / "checkpoint.pt")
    capsys.readouterr()  # the search's own output
    assert search_tool.main(["--resume", "--out", str(out)]) == 2
    line = error_line(capsys, f"{out / 'checkpoint.pt'} does not fit this run")
    assert problem in line
    unchanged(out, before, "checkpoint.pt")
    assert not (out / "genotype.json").exists()

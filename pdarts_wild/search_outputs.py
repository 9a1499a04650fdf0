"""What a run leaves for people to read: its log (``search.log``, ``train.log``), its TensorBoard scalars and, for a
search, the genotype files and pictures."""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from tqdm.contrib.logging import logging_redirect_tqdm

from .genotype import genotype_record, write_genotype_file
from .spaces import SearchSpace

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from .config import SearchConfig
    from .strategies import Derivation
    from .supernet import Supernet

log = logging.getLogger("pdarts_wild")

RESULT = "genotype.json"  # written last: its presence marks a finished search


class _LogFile(logging.FileHandler):
    """A log file whose failed writes (a full disk) stop the run with an OSError naming it, where logging
    would print a traceback and go on."""

    def handleError(self, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror, self.baseFilename) from None
        super().handleError(record)


@contextmanager
def log_to(path: Path, enabled: bool) -> Iterator[None]:
    """Log INFO to ``path`` and the console (through tqdm, so progress bars stay whole); main process only."""
    log.setLevel(logging.INFO)
    log.propagate = False
    if not enabled:
        yield
        return
    file_handler = _LogFile(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    handlers = [file_handler, console]
    for handler in handlers:
        log.addHandler(handler)
    try:
        with logging_redirect_tqdm([log]):
            yield
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


def tensorboard_writer(folder: Path, step: int) -> SummaryWriter:
    """A TensorBoard writer for a run that continues after ``step`` steps (its checkpoint's): TensorBoard hides what
    an earlier, killed process logged at later steps. The checkpointed epoch's own scalars sit at ``step`` and stay."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(folder, purge_step=step + 1)


def edge_name(e: int, space: SearchSpace) -> str:
    """Edge ``e`` as its TensorBoard tag names it: ``e03_n1<-c_k-1`` (DARTS cells), ``e03_n3<-n1`` (NAS-Bench-201)."""
    node, j = space.edges[e]
    if space.topology == "nb201":  # the benchmark's numbering: node 0 is the cell input
        return f"e{e:02d}_n{node + 1}<-n{j}"
    source = ("c_k-2", "c_k-1")[j] if j < 2 else f"n{j - 2}"
    return f"e{e:02d}_n{node}<-{source}"


def log_epoch_scalars(writer: SummaryWriter, record: dict[str, Any], model: Supernet, space: SearchSpace,
                      step: int) -> None:
    """An epoch's numbers (``search/...``), every op's weight on every edge (``alpha_<cell>/<edge>/<op>``) and, with
    edge normalisation, every edge's weight (``edge_weight_<cell>/<edge>``) at ``step``."""
    for key, value in record.items():
        if value is not None and key not in ("stage", "epoch"):
            writer.add_scalar(f"search/{key}", value, step)
    for cell, edges in model.alpha_table().items():
        for e, weights in enumerate(edges):
            for op, w in weights.items():
                writer.add_scalar(f"alpha_{cell}/{edge_name(e, space)}/{op}", w, step)
    for cell, scales in (model.edge_scale_table() or {}).items():
        for e, g in enumerate(scales):
            writer.add_scalar(f"edge_weight_{cell}/{edge_name(e, space)}", g, step)
    writer.flush()


def write_search_result(out: Path, config: SearchConfig, result: Derivation, state: dict[str, Any]) -> None:
    """``genotype.txt``, the cell and alpha pictures, then :data:`RESULT` (the genotype with the final alphas, each
    stage's genotype, what the algorithm records, the final validation accuracy) in ``out``."""
    from .viz import plot_alphas, plot_cells

    c, alphas = config, state["last_alphas"]
    record = genotype_record(result.genotype, c.space, algorithm=c.algorithm, dataset=c.dataset, seed=c.seed,
                             alphas=alphas, stage_genotypes=state["stage_genotypes"], **result.extras,
                             **({} if state["last_edge_scale"] is None else {"edge_weights": state["last_edge_scale"]}),
                             **({"op_growth": state["growth"]} if state["growth"] else {}),
                             final_valid_acc=state["history"][-1]["valid_acc"])
    (out / "genotype.txt").write_text(result.genotype.to_string() + "\n")
    plot_cells(result.genotype, out)
    plot_alphas(alphas, out / "alphas")
    write_genotype_file(out / RESULT, record)
    log.info("genotype: %s", result.genotype.to_string())
    log.info("wrote %s, genotype.txt, cell pictures and TensorBoard logs to %s", RESULT, out)

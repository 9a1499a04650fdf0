"""Datasets for the architecture search, read from their official on-disk formats.

CIFAR-10, CIFAR-100 and SVHN are read by torchvision's own classes; the thin subclasses here
only accept files whose md5 differs from the official one (with a warning), read the CIFAR batches
(pickles) with :func:`pdarts_wild.safe_pickle.read_plain_pickle` instead of ``pickle.load``, so a crafted
batch cannot run code, and turn missing, undownloadable, unreadable or refused files into a one-line
:class:`DataError`. ``digits`` is scikit-learn's bundled 8x8 digits set, upsampled to 32x32 RGB, so it
needs no download.
"""

from __future__ import annotations

import contextlib
import functools
import math
import socket
import tarfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms
from torchvision.datasets.utils import download_and_extract_archive, download_url, extract_archive

from .messages import describe
from .safe_pickle import PickleRefused, read_plain_pickle

DATASETS = ("cifar10", "cifar100", "svhn", "digits")

DOWNLOAD_TIMEOUT_S = 10.0
# URLError and socket timeouts are OSErrors; torchvision raises RuntimeError when a download's md5 is wrong.
_DOWNLOAD_ERRORS = (OSError, HTTPException, RuntimeError, tarfile.TarError, EOFError)


class DataError(Exception):
    """One-line, user-facing problem with a dataset (missing files, bad format).

    ``str(e)`` is the whole message and says how to fix it.
    """


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: classes and per-channel normalisation."""

    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int = 32


_INFOS = {
    "cifar10": DatasetInfo(
        "cifar10", 10, (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)
    ),
    "cifar100": DatasetInfo("cifar100", 100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "svhn": DatasetInfo("svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    # Computed from the converted images by _digits_images(); checked in tests/test_data.py.
    "digits": DatasetInfo("digits", 10, (0.3052, 0.3052, 0.3052), (0.3236, 0.3236, 0.3236)),
}
_NO_FLIP = frozenset({"svhn", "digits"})  # digits are not mirror-invariant


def dataset_info(name: str) -> DatasetInfo:
    """Facts about dataset ``name``; DataError for an unknown name."""
    if name not in _INFOS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return _INFOS[name]


class Cutout:
    """Zero one ``length`` x ``length`` square (clipped at the borders) of a CHW tensor, with probability
    ``prob`` (RobustDARTS ramps it with its search drop-path).

    The centre is a uniformly random pixel drawn with ``torch.randint`` (torch's global RNG),
    so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(self, length: int, prob: float = 1.0) -> None:
        if length < 1:
            raise ValueError(f"Cutout length must be >= 1, got {length}")
        self.length = length
        self.prob = prob

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.prob < 1.0 and float(torch.rand(())) >= self.prob:
            return img
        height, width = img.shape[-2:]
        cy = int(torch.randint(height, ()))
        cx = int(torch.randint(width, ()))
        top, left = cy - self.length // 2, cx - self.length // 2
        out = img.clone()
        out[..., max(top, 0) : top + self.length, max(left, 0) : left + self.length] = 0  # end > 0 always
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self.length}, prob={self.prob})"


def cutout_of(dataset: Dataset) -> Cutout | None:
    """The Cutout step of a dataset's transform (looking through Subsets), or None."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    steps = getattr(getattr(dataset, "transform", None), "transforms", [])
    return next((step for step in steps if isinstance(step, Cutout)), None)


def search_transform(info: DatasetInfo, cutout: int = 0) -> transforms.Compose:
    """The DARTS search augmentation for a PIL image of dataset ``info``."""
    steps: list[Callable] = [transforms.RandomCrop(info.image_size, padding=4)]
    if info.name not in _NO_FLIP:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(info.mean, info.std)]
    if cutout > 0:
        steps.append(Cutout(cutout))
    return transforms.Compose(steps)


def split_indices(n: int, train_portion: float = 0.5) -> tuple[list[int], list[int]]:
    """DARTS split: the first floor(train_portion * n) indices train the weights, the rest the architecture."""
    cut = math.floor(train_portion * n)
    if not 0 < cut < n:
        raise DataError(
            f"cannot split {n} images with train_portion={train_portion}: both halves need at least one image"
        )
    return list(range(cut)), list(range(cut, n))


# --------------------------------------------------------------------------- torchvision sets


class _AsIsFiles:
    """Mixin for torchvision datasets: read present files even if their md5 is not the official one."""

    title: str  # human name, e.g. "CIFAR-10"
    root: str

    @classmethod
    def required_files(cls, root: Path) -> list[Path]:
        """Files that must be present (torchvision checks every one, test split included)."""
        raise NotImplementedError

    @classmethod
    def where_hint(cls) -> str:
        """What the user must put into root."""
        raise NotImplementedError

    @classmethod
    def fetch(cls, root: Path) -> None:
        """Download the official files into root with torchvision's helpers."""
        raise NotImplementedError

    @classmethod
    def unpack_local(cls, root: Path) -> None:
        """Make a local archive's files available, if the dataset ships as one."""

    def _check_integrity(self) -> bool:
        if not all(path.is_file() for path in self.required_files(Path(self.root))):
            return False
        if not super()._check_integrity():  # type: ignore[misc]  # torchvision's md5 check
            warnings.warn(
                f"{self.title} files in {self.root} do not match the official checksums "
                "(e.g. a generated copy); using them as they are",
                stacklevel=2,
            )
        return True


class _CIFAR10(_AsIsFiles, datasets.CIFAR10):
    title = "CIFAR-10"
    label_key = "labels"

    @classmethod
    def required_files(cls, root: Path) -> list[Path]:
        folder = root / cls.base_folder
        names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [folder / name for name in names]

    @classmethod
    def where_hint(cls) -> str:
        return f"{cls.filename} or {cls.base_folder}/"

    @classmethod
    def fetch(cls, root: Path) -> None:
        download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)

    @classmethod
    def unpack_local(cls, root: Path) -> None:
        archive = root / cls.filename
        if not archive.is_file() or (root / cls.base_folder).exists():
            return
        try:
            extract_archive(archive, root)
        except (OSError, tarfile.TarError, EOFError) as err:
            raise DataError(f"cannot extract {archive} ({describe(err)}): replace it with the official file") from err

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        """torchvision's CIFAR10.__init__ (files already present), reading each batch with read_plain_pickle."""
        datasets.VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        if not self._check_integrity():
            raise DataError(f"{self.title} not found: put {self.where_hint()} into {self.root}")
        files = self.train_list if train else self.test_list
        batches = [self._read(name, ("data", self.label_key)) for name, _ in files]
        self._load_meta()
        for (name, _), batch in zip(files, batches):
            self._check_labels(name, batch)
        self.data = np.vstack([batch["data"] for batch in batches]).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
        self.targets = [label for batch in batches for label in batch[self.label_key]]

    def _load_meta(self) -> None:
        self.classes = self._read(self.meta["filename"], (self.meta["key"],))[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def _check_labels(self, name: str, batch: dict) -> None:
        """One label per image, each a class of this dataset: a label out of range would stop the search only at
        its loss (an IndexError), after the run folder was written."""
        path = Path(self.root) / self.base_folder / name
        labels, images, n = batch[self.label_key], batch["data"], len(self.classes)
        if not isinstance(labels, (list, tuple, np.ndarray)) or not hasattr(images, "__len__") \
                or len(labels) != len(images):
            raise DataError(f"{path} does not hold one label per image: replace it with the official file")
        if not all(isinstance(label, (int, np.integer)) and 0 <= label < n for label in labels):
            raise DataError(f"{path} holds labels outside 0..{n - 1} ({self.title} has {n} classes): replace it with "
                            "the official file")

    def _read(self, name: str, keys: tuple[str, ...]) -> dict:
        """The dict pickled in batch file ``name``, holding ``keys``; a DataError naming the file otherwise."""
        path = Path(self.root) / self.base_folder / name
        try:
            batch = read_plain_pickle(path)
        except PickleRefused as err:
            raise DataError(f"refused {path}: {err}; replace it with the official file") from None
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}") from None
        except Exception as err:  # noqa: BLE001 - whatever a broken pickle raises
            raise DataError(f"cannot read {self.title} from {path} ({describe(err)}): replace it with the official "
                            "file") from None
        missing = [key for key in keys if not isinstance(batch, dict) or key not in batch]
        if missing:
            raise DataError(f"{path} is not a {self.title} python batch (no {missing[0]!r}): replace it with the "
                            "official file")
        return batch


class _CIFAR100(_CIFAR10, datasets.CIFAR100):
    title = "CIFAR-100"
    label_key = "fine_labels"


class _SVHN(_AsIsFiles, datasets.SVHN):
    title = "SVHN"

    @classmethod
    def required_files(cls, root: Path) -> list[Path]:
        return [root / cls.split_list["train"][1]]

    @classmethod
    def where_hint(cls) -> str:
        return cls.split_list["train"][1]

    @classmethod
    def fetch(cls, root: Path) -> None:
        url, filename, md5 = cls.split_list["train"]
        download_url(url, root, filename, md5)


_TORCHVISION_SETS: dict[str, type[_AsIsFiles]] = {"cifar10": _CIFAR10, "cifar100": _CIFAR100, "svhn": _SVHN}


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Temporarily make sockets without an explicit timeout give up after ``seconds``."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _ensure_files(cls: type[_AsIsFiles], root: Path, download: bool) -> None:
    """Make the training files present in root: unpack a local archive or download; else DataError."""
    cls.unpack_local(root)
    if all(path.is_file() for path in cls.required_files(root)):
        return
    if not download:
        raise DataError(f"{cls.title} not found (download disabled): put {cls.where_hint()} into {root}")
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            cls.fetch(root)
    except _DOWNLOAD_ERRORS as err:
        raise DataError(
            f"could not download {cls.title} ({describe(err, 40)}): put {cls.where_hint()} into {root}"
        ) from err


def _load_torchvision(name: str, root: Path, download: bool, transform: Callable, train: bool = True) -> Dataset:
    """The training (or CIFAR test) split of a torchvision dataset, read from root (downloaded if allowed)."""
    cls = _TORCHVISION_SETS[name]
    _ensure_files(cls, root, download)
    split = {"split": "train"} if cls is _SVHN else {"train": train}
    try:
        return cls(root, transform=transform, **split)  # type: ignore[call-arg]
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - present files that fail to parse, whatever the error
        files = cls.required_files(root)
        bad = files[0] if len(files) == 1 else files[0].parent  # SVHN's one file, or the CIFAR folder
        raise DataError(
            f"cannot read {cls.title} from {bad} ({describe(err)}): replace it with the official file"
        ) from err


# --------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as read-only uint8 (N, 32, 32, 3) images and int64 labels."""
    from sklearn.datasets import load_digits  # here, not at the top: it costs every tool ~1 s to import

    bunch = load_digits()
    small = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)  # N x 1 x 8 x 8
    big = F.interpolate(small, size=32, mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    images = big.mul(255.0).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


class DigitsDataset(Dataset):
    """scikit-learn's 1,797 digits as 32x32 RGB PIL images (the whole set is the training split)."""

    def __init__(self, transform: Callable | None = None) -> None:
        self.data, self.targets = _digits_images()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[object, int]:
        img = Image.fromarray(self.data[index])
        return (self.transform(img) if self.transform else img), int(self.targets[index])


# --------------------------------------------------------------------------- entry point


def build_search_dataset(
    name: str,
    root: str | Path,
    *,
    download: bool = True,
    cutout: int = 0,
    train_limit: int | None = None,
) -> tuple[Dataset, DatasetInfo]:
    """The training split of ``name`` with the search augmentation, and its info.

    ``root`` holds the official files (ignored for digits); ``train_limit`` keeps the first N images.
    """
    info = dataset_info(name)
    transform = search_transform(info, cutout)
    if name == "digits":
        dataset: Dataset = DigitsDataset(transform)
    else:
        dataset = _load_torchvision(name, Path(root).expanduser().resolve(), download, transform)
    if train_limit is None:
        return dataset, info
    if train_limit < 1:
        raise DataError(f"train_limit must be >= 1, got {train_limit}")
    return Subset(dataset, range(min(train_limit, len(dataset)))), info


def build_test_dataset(name: str, root: str | Path, *, download: bool = True) -> tuple[Dataset, DatasetInfo]:
    """The CIFAR-10/100 test split, only normalised (the evaluation protocol's test transform), and its info."""
    if name not in ("cifar10", "cifar100"):
        raise DataError(f"no test split for {name!r}: choose cifar10 or cifar100")
    info = dataset_info(name)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])
    return _load_torchvision(name, Path(root).expanduser().resolve(), download, transform, train=False), info

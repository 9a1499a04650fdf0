"""Tiny datasets in the official on-disk formats of CIFAR-10, CIFAR-100 and SVHN.

Each class has its own blocky colour pattern plus noise, so a small network can learn them.
The CIFAR pickles are written as Python 2 wrote the originals: protocol 2 with byte strings as
Python 2 ``str`` (so ``pickle.load(f, encoding="latin1")`` returns ``str`` keys, as torchvision expects)
and the arrays rebuilt by ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import scipy.io

IMAGE_SHAPE = (32, 32, 3)
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array rebuild function (numpy._core.multiarray in numpy 2)


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes ``bytes`` as Python 2 ``str`` opcodes and numpy's array rebuild function
    under numpy 1's name, ``numpy.core.multiarray._reconstruct``, like the original files."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_global(self, obj: object, name: str | None = None) -> None:
        if obj is not _RECONSTRUCT:
            super().save_global(obj, name)
            return
        self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
        self.memoize(obj)

    def save_py2_str(self, obj: bytes) -> None:
        """Write obj with SHORT_BINSTRING / BINSTRING."""
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    """obj pickled as a Python 2 program would have pickled it (protocol 2)."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def class_images(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """uint8 (N, 32, 32, 3) images: a fixed 4x4 colour pattern per class (8-pixel blocks) plus noise."""
    prototypes = np.random.default_rng(12345).uniform(0, 255, size=(num_classes, 4, 4, 3))
    blocks = np.kron(prototypes, np.ones((1, 8, 8, 1)))
    noise = np.random.default_rng(seed + 1).normal(0, 25, size=(len(labels), *IMAGE_SHAPE))
    return np.clip(blocks[labels] + noise, 0, 255).astype(np.uint8)


def balanced_labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    """n shuffled labels covering every class when n >= num_classes."""
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """HWC images as CIFAR rows: N x 3072 with the R, G and B planes row-major one after another."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def _filenames(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}_s_{i:06d}.png".encode() for i in range(n)]


def _write_cifar(root: Path, folder: str, files: dict[str, object], as_tarball: bool, tarball: str) -> Path:
    """Write the pickled files into root/folder, or as root/tarball containing folder."""
    root.mkdir(parents=True, exist_ok=True)
    if not as_tarball:
        (root / folder).mkdir(exist_ok=True)
        for name, obj in files.items():
            (root / folder / name).write_bytes(py2_pickle(obj))
        return root
    with tarfile.open(root / tarball, "w:gz") as archive:
        for name, obj in files.items():
            payload = py2_pickle(obj)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return root


def write_cifar10(root: Path, n_train: int = 64, n_test: int = 16, seed: int = 0, as_tarball: bool = False) -> Path:
    """root/cifar-10-batches-py/ (or root/cifar-10-python.tar.gz) with the train images over 5 batches."""
    train_labels = balanced_labels(n_train, 10, seed)
    train_rows = _cifar_rows(class_images(train_labels, 10, seed))
    test_labels = balanced_labels(n_test, 10, seed + 100)
    files: dict[str, object] = {}
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        files[f"data_batch_{i}"] = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": [int(label) for label in train_labels[part]],
            b"data": train_rows[part],
            b"filenames": _filenames(f"train{i}", len(part)),
        }
    files["test_batch"] = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(label) for label in test_labels],
        b"data": _cifar_rows(class_images(test_labels, 10, seed + 100)),
        b"filenames": _filenames("test", n_test),
    }
    files["batches.meta"] = {
        b"num_cases_per_batch": math.ceil(n_train / 5),
        b"label_names": [name.encode() for name in CIFAR10_NAMES],
        b"num_vis": 3072,
    }
    return _write_cifar(Path(root), "cifar-10-batches-py", files, as_tarball, "cifar-10-python.tar.gz")


def _cifar100_split(n: int, seed: int, batch_label: bytes) -> dict[bytes, object]:
    fine = balanced_labels(n, 100, seed)
    return {
        b"filenames": _filenames(batch_label.decode(), n),
        b"batch_label": batch_label,
        b"fine_labels": [int(label) for label in fine],
        b"coarse_labels": [int(label) // 5 for label in fine],
        b"data": _cifar_rows(class_images(fine, 100, seed)),
    }


def write_cifar100(root: Path, n_train: int = 64, n_test: int = 16, seed: int = 0, as_tarball: bool = False) -> Path:
    """root/cifar-100-python/{train,test,meta} (or root/cifar-100-python.tar.gz); 100 fine, 20 coarse classes."""
    files = {
        "train": _cifar100_split(n_train, seed, b"training"),
        "test": _cifar100_split(n_test, seed + 100, b"testing"),
        "meta": {
            b"fine_label_names": [f"fine_{i:02d}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)],
        },
    }
    return _write_cifar(Path(root), "cifar-100-python", files, as_tarball, "cifar-100-python.tar.gz")


def write_svhn(root: Path, n_train: int = 64, seed: int = 0) -> Path:
    """root/train_32x32.mat: X uint8 (32, 32, 3, N), y uint8 (N, 1) with labels 1..10 (10 is digit 0)."""
    digits = balanced_labels(n_train, 10, seed)
    images = class_images(digits, 10, seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    svhn_labels = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(root / "train_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": svhn_labels})
    return root


def write_imagenet_folder(
    root: Path, classes: int = 3, per_class: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0
) -> Path:
    """root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG: per_class images of size (height, width) per class.

    Each class is a fixed 4x4 colour pattern stretched over the image, plus noise, so a small network can learn it.
    """
    from PIL import Image  # only this writer needs PIL

    height, width = size
    prototypes = np.random.default_rng(12345).uniform(0, 255, size=(classes, 4, 4, 3)).astype(np.uint8)
    root = Path(root)
    for split, split_seed in (("train", seed), ("val", seed + 100)):
        noise = np.random.default_rng(split_seed)
        for k in range(classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            pattern = np.asarray(Image.fromarray(prototypes[k]).resize((width, height), Image.NEAREST), dtype=float)
            for i in range(per_class):
                image = np.clip(pattern + noise.normal(0, 20, size=pattern.shape), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{split}_{k}_{i}.JPEG", quality=90)
    return root


def write_coco(
    root: Path,
    n_images: int = 6,
    classes: tuple[str, ...] = ("a", "b", "c"),
    size: tuple[int, int] = (128, 96),
    seed: int = 0,
) -> Path:
    """A tiny COCO 2017 layout under root: ``train2017/``, ``val2017/`` (``n_images`` JPEGs each, ``size`` =
    (width, height)) and ``annotations/instances_{train,val}2017.json``; every image holds one or two filled
    boxes, each in its class's colour, on a noisy grey background. Category ids are 1..len(classes)."""
    import json

    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = np.random.default_rng(12345).uniform(0, 255, size=(len(classes), 3))
    width, height = size
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(classes)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split_index, split in enumerate(("train2017", "val2017")):
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(n_images):
            image_id = split_index * n_images + i + 1
            pixels = rng.normal(128, 20, size=(height, width, 3))
            for _ in range(rng.integers(1, 3)):
                label = int(rng.integers(len(classes)))
                w, h = (int(v) for v in rng.integers(16, min(width, height) // 2, size=2))
                x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
                pixels[y : y + h, x : x + w] = colours[label]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "segmentation": [],
                })  # fmt: skip
            file_name = f"{image_id:012d}.jpg"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / split / file_name, quality=95)
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        document = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    return root


# ------------------------------------------------------------------------------ person re-identification

REID_SIZE = (128, 64)  # (height, width) of the generated person crops


def _person_image(pid: int, rng: np.random.Generator) -> "Image.Image":
    """A (128, 64) crop: the identity's upper- and lower-body colours (fixed per pid) plus noise."""
    from PIL import Image

    colours = np.random.default_rng(1000 + pid).uniform(0, 255, size=(2, 3))
    height, width = REID_SIZE
    pixels = np.repeat(colours, height // 2, axis=0)[:, None, :].repeat(width, axis=1)
    pixels = pixels + rng.normal(0, 15, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _reid_views(
    n_train_ids: int, n_test_ids: int, cameras: int, per_camera: int, first_pid: int
) -> dict[str, list[tuple[int, int, int]]]:
    """``(pid, camera, index)`` per split: train ids seen by every camera; each test id queried once from
    camera 1 and in the gallery from cameras 2..``cameras`` only (so every query has a true match)."""
    if cameras < 2:
        raise ValueError(f"ReID test data needs at least 2 cameras, got {cameras}")
    train_ids = range(first_pid, first_pid + n_train_ids)
    test_ids = range(first_pid + n_train_ids, first_pid + n_train_ids + n_test_ids)
    return {
        "train": [(p, c, k) for p in train_ids for c in range(1, cameras + 1) for k in range(per_camera)],
        "query": [(p, 1, 0) for p in test_ids],
        "gallery": [(p, c, k) for p in test_ids for c in range(2, cameras + 1) for k in range(per_camera)],
    }


def _write_person_folders(
    base: Path, folders: dict[str, str], views: dict[str, list[tuple[int, int, int]]],
    name: "Callable[[int, int, int], str]", seed: int,
) -> None:
    """One JPEG per view, named by ``name(pid, camera, index)``, in ``base/folders[split]``."""
    rng = np.random.default_rng(seed)
    for split, folder in folders.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        for pid, cam, k in views[split]:
            _person_image(pid, rng).save(base / folder / name(pid, cam, k), quality=95)


MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def write_market1501(
    root: Path, n_train_ids: int = 6, n_test_ids: int = 4, cameras: int = 3, per_camera: int = 2, seed: int = 0
) -> Path:
    """Market-1501 as torchreid reads it: ``root/market1501/Market-1501-v15.09.15/{bounding_box_train,query,
    bounding_box_test}/0002_c1s1_000451_03.jpg`` (pid, camera, sequence, frame, box). Returns the dataset folder."""
    base = Path(root) / "market1501" / "Market-1501-v15.09.15"
    views = _reid_views(n_train_ids, n_test_ids, cameras, per_camera, first_pid=1)
    _write_person_folders(base, MARKET_FOLDERS, views, lambda p, c, k: f"{p:04d}_c{c}s1_{100 * k + p:06d}_01.jpg", seed)
    return base


def write_dukemtmcreid(
    root: Path, n_train_ids: int = 6, n_test_ids: int = 4, cameras: int = 3, per_camera: int = 2, seed: int = 0
) -> Path:
    """DukeMTMC-reID as torchreid reads it: ``root/dukemtmc-reid/DukeMTMC-reID/{bounding_box_train,query,
    bounding_box_test}/0001_c2_f0046182.jpg``. Returns the dataset folder."""
    base = Path(root) / "dukemtmc-reid" / "DukeMTMC-reID"
    views = _reid_views(n_train_ids, n_test_ids, cameras, per_camera, first_pid=1)
    _write_person_folders(base, MARKET_FOLDERS, views, lambda p, c, k: f"{p:04d}_c{c}_f{1000 * k + p:07d}.jpg", seed)
    return base


def write_msmt17(
    root: Path, n_train_ids: int = 6, n_test_ids: int = 4, cameras: int = 3, per_camera: int = 2, seed: int = 0
) -> Path:
    """MSMT17 (V1) as torchreid reads it: ``root/msmt17/MSMT17_V1/{train,test}/<pid>/<pid>_<n>_<cam>_0113morning_
    <frame>_0.jpg`` and ``list_{train,val,query,gallery}.txt`` ("<pid>/<file> <pid>" lines; train pids
    0..n-1, val = the first image of each train id). Returns the dataset folder."""
    base = Path(root) / "msmt17" / "MSMT17_V1"
    views = _reid_views(n_train_ids, n_test_ids, cameras, per_camera, first_pid=0)
    folders = {"train": "train", "query": "test", "gallery": "test"}
    counter = iter(range(10**6))

    def relative(pid: int, cam: int, k: int) -> str:
        return f"{pid:04d}/{pid:04d}_{next(counter):03d}_{cam:02d}_0113morning_{k:04d}_0.jpg"

    names = {split: [relative(*view) for view in views[split]] for split in views}
    rng = np.random.default_rng(seed)
    for split, folder in folders.items():
        for (pid, _, _), rel in zip(views[split], names[split]):
            (base / folder / rel).parent.mkdir(parents=True, exist_ok=True)
            _person_image(pid, rng).save(base / folder / rel, quality=95)
    lists = {**names, "val": [n for n, (_, c, k) in zip(names["train"], views["train"]) if c == 1 and k == 0]}
    for split, rels in lists.items():
        pids = [int(r.split("/")[0]) for r in rels]
        (base / f"list_{split}.txt").write_text("".join(f"{r} {p}\n" for r, p in zip(rels, pids)))
    return base

"""Tests for pdarts_wild.data on generated copies of the official dataset files."""

from __future__ import annotations

import pickle
import socket
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from datagen import class_images, write_cifar10, write_cifar100, write_svhn
from torchvision import transforms

from pdarts_wild.data import (
    DATASETS,
    DOWNLOAD_TIMEOUT_S,
    Cutout,
    DataError,
    build_search_dataset,
    build_test_dataset,
    dataset_info,
    split_indices,
)

CHECKSUM_WARNING = "do not match the official checksums"


def _build_warned(name: str, root: Path, **kwargs):
    """build_search_dataset, asserting exactly one checksum warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build_search_dataset(name, root, **kwargs)
    messages = [str(w.message) for w in caught]
    assert sum(CHECKSUM_WARNING in m for m in messages) == 1, messages
    return result


def _load_py2_pickle(path: Path) -> dict:
    with path.open("rb") as handle:
        return pickle.load(handle, encoding="bytes")


def _rows_to_hwc(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _check_items(dataset, num_classes: int) -> None:
    for index in (0, len(dataset) - 1):
        image, label = dataset[index]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert 0 <= label < num_classes


def _no_network(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Make every urlopen fail; return the socket default timeouts seen by the attempts."""
    seen: list[float | None] = []

    def refuse(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return seen


# --------------------------------------------------------------------------- reading the formats


@pytest.mark.parametrize("as_tarball", [False, True])
def test_cifar10_reads_generated_files(tmp_path: Path, as_tarball: bool) -> None:
    write_cifar10(tmp_path, n_train=53, n_test=7, seed=3, as_tarball=as_tarball)
    dataset, info = _build_warned("cifar10", tmp_path, download=False)
    assert info.num_classes == 10 and len(dataset) == 53
    _check_items(dataset, 10)
    batches = [_load_py2_pickle(tmp_path / "cifar-10-batches-py" / f"data_batch_{i}") for i in range(1, 6)]
    assert dataset.targets == [label for batch in batches for label in batch[b"labels"]]
    assert set(dataset.targets) == set(range(10))
    expected = _rows_to_hwc(np.vstack([batch[b"data"] for batch in batches]))
    np.testing.assert_array_equal(dataset.data, expected)
    assert dataset.classes[0] == "airplane"


def test_cifar10_tarball_is_extracted_next_to_it(tmp_path: Path) -> None:
    write_cifar10(tmp_path, as_tarball=True)
    assert not (tmp_path / "cifar-10-batches-py").exists()
    _build_warned("cifar10", tmp_path, download=False)
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_1").is_file()


def test_cifar100_reads_generated_files(tmp_path: Path) -> None:
    write_cifar100(tmp_path, n_train=120, seed=1)
    dataset, info = _build_warned("cifar100", tmp_path, download=False)
    assert info.num_classes == 100 and len(dataset) == 120
    _check_items(dataset, 100)
    train = _load_py2_pickle(tmp_path / "cifar-100-python" / "train")
    assert dataset.targets == train[b"fine_labels"]
    assert set(dataset.targets) == set(range(100))
    np.testing.assert_array_equal(dataset.data, _rows_to_hwc(train[b"data"]))


def test_svhn_reads_generated_file_and_maps_label_10_to_0(tmp_path: Path) -> None:
    write_svhn(tmp_path, n_train=40, seed=2)
    dataset, info = _build_warned("svhn", tmp_path, download=False)
    assert info.num_classes == 10 and len(dataset) == 40
    _check_items(dataset, 10)
    mat = scipy.io.loadmat(tmp_path / "train_32x32.mat")
    assert mat["X"].shape == (32, 32, 3, 40) and mat["y"].shape == (40, 1)
    assert set(mat["y"].ravel()) == set(range(1, 11))
    np.testing.assert_array_equal(dataset.labels, mat["y"].ravel() % 10)
    np.testing.assert_array_equal(dataset.data.transpose(0, 2, 3, 1), mat["X"].transpose(3, 0, 1, 2))


def test_present_files_are_used_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = _no_network(monkeypatch)
    write_cifar10(tmp_path)
    dataset, _ = _build_warned("cifar10", tmp_path, download=True)
    assert len(dataset) == 64 and attempts == []


def test_generated_classes_are_learnable() -> None:
    train_labels = np.arange(200) % 10
    train = class_images(train_labels, 10, seed=0).reshape(200, -1).astype(np.float64)
    test_labels = np.arange(50) % 10
    test = class_images(test_labels, 10, seed=7).reshape(50, -1).astype(np.float64)
    means = np.stack([train[train_labels == c].mean(axis=0) for c in range(10)])
    predicted = ((test[:, None, :] - means[None]) ** 2).sum(axis=-1).argmin(axis=1)
    assert (predicted == test_labels).mean() > 0.9


# --------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize(("name", "flips"), [("cifar10", True), ("cifar100", True), ("svhn", False), ("digits", False)])
def test_flip_only_for_mirror_invariant_sets(tmp_path: Path, name: str, flips: bool) -> None:
    {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn, "digits": lambda root: root}[name](
        tmp_path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset, _ = build_search_dataset(name, tmp_path, download=False, cutout=16)
    steps = [type(step) for step in dataset.transform.transforms]
    assert steps[0] is transforms.RandomCrop and steps[-1] is Cutout
    assert (transforms.RandomHorizontalFlip in steps) == flips


def test_no_cutout_by_default() -> None:
    dataset, _ = build_search_dataset("digits", "unused")
    assert Cutout not in [type(step) for step in dataset.transform.transforms]


def test_train_limit_keeps_the_first_images(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    full, _ = _build_warned("cifar10", tmp_path, download=False)
    limited, _ = _build_warned("cifar10", tmp_path, download=False, train_limit=10)
    assert len(limited) == 10
    assert [limited[i][1] for i in range(10)] == full.targets[:10]
    assert len(build_search_dataset("digits", tmp_path, train_limit=5000)[0]) == 1797
    with pytest.raises(DataError, match="train_limit"):
        build_search_dataset("digits", tmp_path, train_limit=0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cifar10", ["cifar-10-python.tar.gz", "cifar-10-batches-py/"]),
        ("cifar100", ["cifar-100-python.tar.gz", "cifar-100-python/"]),
        ("svhn", ["train_32x32.mat"]),
    ],
)
def test_missing_files_without_download(tmp_path: Path, name: str, expected: list[str]) -> None:
    with pytest.raises(DataError) as info:
        build_search_dataset(name, tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path.resolve()) in message and "\n" not in message
    assert all(part in message for part in expected)


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_download_without_network_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    attempts = _no_network(monkeypatch)
    previous = socket.getdefaulttimeout()
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        build_search_dataset(name, tmp_path / "data", download=True)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert message.startswith("could not download") and str((tmp_path / "data").resolve()) in message
    assert "\n" not in message
    assert attempts and all(timeout == DOWNLOAD_TIMEOUT_S for timeout in attempts)
    assert socket.getdefaulttimeout() == previous


def test_corrupt_cifar_batch_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3") as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_search_dataset("cifar10", tmp_path, download=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("labels, message", [
    ([99] * 8, "holds labels outside 0..9 (CIFAR-10 has 10 classes)"),
    ([1] * 7, "does not hold one label per image"),
], ids=["out-of-range", "count"])
def test_cifar_labels_that_are_not_its_classes_are_named(tmp_path: Path, labels: list[int], message: str) -> None:
    write_cifar10(tmp_path, n_train=40, n_test=8)
    test_batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(test_batch.read_bytes(), encoding="latin1")
    test_batch.write_bytes(pickle.dumps({**batch, "labels": labels}))
    with pytest.raises(DataError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_test_dataset("cifar10", tmp_path, download=False)
    assert str(info.value) == f"{test_batch} {message}: replace it with the official file"


def test_corrupt_tarball_is_named(tmp_path: Path) -> None:
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError, match="cifar-100-python.tar.gz"):
        build_search_dataset("cifar100", tmp_path, download=False)


def test_svhn_with_wrong_keys_is_named(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"images": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataError, match="train_32x32.mat"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_search_dataset("svhn", tmp_path, download=False)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(DataError) as info:
        dataset_info("mnist")
    assert all(name in str(info.value) for name in DATASETS)
    with pytest.raises(DataError, match="cifar10"):
        build_search_dataset("imagenet", ".")


# --------------------------------------------------------------------------- digits


def test_digits_images_and_statistics() -> None:
    dataset, info = build_search_dataset("digits", "ignored")
    assert len(dataset) == 1797 and info.num_classes == 10 and info.image_size == 32
    _check_items(dataset, 10)
    assert set(dataset.targets.tolist()) == set(range(10))
    assert dataset.data.shape == (1797, 32, 32, 3) and dataset.data.dtype == np.uint8
    pixels = dataset.data.astype(np.float64) / 255
    np.testing.assert_allclose(pixels.mean(axis=(0, 1, 2)), info.mean, atol=1e-4)
    np.testing.assert_allclose(pixels.std(axis=(0, 1, 2)), info.std, atol=1e-4)


# --------------------------------------------------------------------------- split and cutout


def test_split_indices() -> None:
    assert split_indices(10) == (list(range(5)), list(range(5, 10)))
    assert split_indices(7) == ([0, 1, 2], [3, 4, 5, 6])
    assert split_indices(10, 0.8) == (list(range(8)), [8, 9])
    for n, portion in [(1, 0.5), (0, 0.5), (10, 0.0), (10, 1.0), (10, 0.05)]:
        with pytest.raises(DataError):
            split_indices(n, portion)


def _square_masks(size: int, length: int) -> list[torch.Tensor]:
    """Every length x length square centred at a pixel, clipped to a size x size image."""
    masks = []
    for cy in range(size):
        for cx in range(size):
            mask = torch.zeros(size, size, dtype=torch.bool)
            top, left = cy - length // 2, cx - length // 2
            mask[max(top, 0) : top + length, max(left, 0) : left + length] = True
            masks.append(mask)
    return masks


@pytest.mark.parametrize("length", [16, 5])
def test_cutout_zeroes_one_clipped_square(length: int) -> None:
    masks = _square_masks(32, length)
    image = torch.rand(3, 32, 32) + 0.5
    clipped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = Cutout(length)(image)
        zero = out == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])
        assert any(torch.equal(zero[0], mask) for mask in masks)
        assert torch.equal(out[~zero], image[~zero])
        clipped += int(zero[0].sum()) < length * length
    assert image.min() > 0  # input left untouched
    assert clipped > 0  # some squares hit a border


def test_cutout_is_reproducible() -> None:
    image = torch.ones(3, 32, 32)
    torch.manual_seed(11)
    first = [Cutout(8)(image) for _ in range(5)]
    torch.manual_seed(11)
    second = [Cutout(8)(image) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(first[0], other) for other in first[1:])

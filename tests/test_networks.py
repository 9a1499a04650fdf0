"""Evaluation networks: exact parameter counts, shapes, feature taps, input checks and drop-path."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pdarts_wild.genotype import Genotype
from pdarts_wild.networks import EvalCell, NetworkCIFAR, NetworkImageNet, count_parameters, drop_path
from pdarts_wild.zoo import GENOTYPES

# Spec table "parameter counts of the published genotypes" (aux head excluded), counted with the
# authors' own model.py. CIFAR: C=36, L=20; ImageNet: C=48, L=14, 1000 classes.
CIFAR10 = {
    "DARTS_V1": 3_169_414, "DARTS_V2": 3_349_342, "PDARTS": 3_433_798, "PC_DARTS_cifar": 3_634_678,
    "PC_DARTS_image": 3_721_510, "OPP_DARTS": 3_359_062, "NASNet": 3_830_950, "AmoebaNet": 3_145_078,
}
CIFAR100 = {
    "DARTS_V1": 3_221_344, "DARTS_V2": 3_401_272, "PDARTS": 3_485_728, "PC_DARTS_cifar": 3_686_608,
    "PC_DARTS_image": 3_773_440, "OPP_DARTS": 3_410_992,
}
CIFAR10_C64 = {
    "DARTS_V1": 9_765_066, "DARTS_V2": 10_310_730, "PDARTS": 10_521_802, "PC_DARTS_cifar": 11_093_962,
    "PC_DARTS_image": 11_402_442, "OPP_DARTS": 10_224_074,
}
IMAGENET = {
    "DARTS_V1": 4_510_432, "DARTS_V2": 4_718_752, "PDARTS": 4_944_352, "PC_DARTS_cifar": 5_270_560,
    "PC_DARTS_image": 5_342_464, "OPP_DARTS": 4_967_776, "NASNet": 5_564_320, "AmoebaNet": 4_627_360,
}

COUNT_CASES = (
    [pytest.param(NetworkCIFAR, g, {}, n, id=f"cifar10-{g}") for g, n in CIFAR10.items()]
    + [pytest.param(NetworkCIFAR, g, {"num_classes": 100}, n, id=f"cifar100-{g}") for g, n in CIFAR100.items()]
    + [pytest.param(NetworkCIFAR, g, {"C": 64}, n, id=f"cifar10-C64-{g}") for g, n in CIFAR10_C64.items()]
    + [pytest.param(NetworkImageNet, g, {}, n, id=f"imagenet-{g}") for g, n in IMAGENET.items()]
)


def on_meta(network: type, *args: object, **kwargs: object) -> torch.nn.Module:
    """Build a network without allocating or initialising weights (counts and shapes only)."""
    with torch.device("meta"):
        return network(*args, **kwargs)


def tiny_cifar(genotype: str = "PDARTS", **kwargs: object) -> NetworkCIFAR:
    torch.manual_seed(0)
    return NetworkCIFAR(genotype, C=8, layers=5, **kwargs)


@pytest.mark.parametrize("network, genotype, kwargs, expected", COUNT_CASES)
def test_parameter_count_matches_the_authors_networks(network, genotype, kwargs, expected):
    assert count_parameters(on_meta(network, genotype, **kwargs)) == expected


@pytest.mark.parametrize(
    "network, kwargs, expected",
    [
        pytest.param(NetworkCIFAR, {}, 476_426, id="cifar10"),
        pytest.param(NetworkImageNet, {"aux_bn": True}, 1_262_312, id="imagenet-pdarts-head"),
        pytest.param(NetworkImageNet, {"aux_bn": False}, 1_260_776, id="imagenet-darts-head"),
    ],
)
def test_auxiliary_head_size_and_exclusion_from_the_count(network, kwargs, expected):
    with_aux = on_meta(network, "PDARTS", auxiliary=True, **kwargs)
    total = sum(p.numel() for p in with_aux.parameters())
    assert total - count_parameters(with_aux) == expected
    assert count_parameters(with_aux) == count_parameters(on_meta(network, "PDARTS", **kwargs))


def test_genotype_by_name_string_or_value_builds_the_same_network():
    by_value = on_meta(NetworkCIFAR, GENOTYPES["DARTS_V2"])
    for spec in ("DARTS_V2", "darts", GENOTYPES["DARTS_V2"].to_string()):
        assert count_parameters(on_meta(NetworkCIFAR, spec)) == count_parameters(by_value)


def test_state_dict_keys_follow_the_authors_layout():
    cifar = on_meta(NetworkCIFAR, "PDARTS", auxiliary=True).state_dict()
    for key in [
        "stem.0.weight", "stem.1.weight",
        "cells.0.preprocess0.op.1.weight", "cells.0.preprocess1.op.2.running_var",
        "cells.7.preprocess0.conv_1.weight", "cells.7.preprocess0.conv_2.weight",  # after reduction cell 6
        "cells.0.ops.1.op.1.weight",  # PDARTS normal pair 1: dil_conv_3x3 (skip_connect 0 has no weights)
        "auxiliary_head.features.5.weight", "auxiliary_head.features.6.weight", "auxiliary_head.classifier.bias",
        "classifier.weight",
    ]:
        assert key in cifar, key
    imagenet = on_meta(NetworkImageNet, "DARTS_V2", auxiliary=True, aux_bn=False).state_dict()
    for key in ["stem0.0.weight", "stem0.4.running_mean", "stem1.1.weight", "cells.0.preprocess0.conv_1.weight"]:
        assert key in imagenet, key
    assert "auxiliary_head.features.6.weight" not in imagenet  # DARTS head: ReLU right after the 2x2 conv


def test_cifar_logits_and_auxiliary_logits_only_in_training():
    net = tiny_cifar(auxiliary=True)
    x = torch.randn(2, 3, 32, 32)
    logits, aux = net.train()(x)
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    logits, aux = net.eval()(x)
    assert logits.shape == (2, 10) and aux is None
    assert tiny_cifar()(x)[1] is None  # auxiliary=False: no head even in training


@pytest.mark.parametrize("genotype, multipliers", [("NASNet", (5, 3)), ("AmoebaNet", (3, 3))])
def test_five_node_cells_with_partial_concat(genotype, multipliers):
    net = tiny_cifar(genotype).eval()
    normal, reduce = net.cells[0], net.cells[1]
    assert (normal.multiplier, reduce.multiplier) == multipliers
    assert len(normal.ops) == len(reduce.ops) == 10
    assert net.cell_channels[:2] == [multipliers[0] * 8, multipliers[1] * 16]
    assert net(torch.randn(1, 3, 32, 32))[0].shape == (1, 10)


def test_cifar_cell_channels_and_strides():
    net = on_meta(NetworkCIFAR, "PDARTS")
    assert net.reduction_cells == [6, 13] and net.aux_cell_index == 13
    assert net.cell_channels == [144] * 6 + [288] * 7 + [576] * 7
    assert net.cell_strides == [1] * 6 + [2] * 7 + [4] * 7

    small = tiny_cifar().eval()
    with torch.no_grad():
        shapes = [tuple(out.shape[1:]) for out in small.iter_cell_outputs(torch.randn(1, 3, 32, 32))]
    assert shapes == [(c, 32 // s, 32 // s) for c, s in zip(small.cell_channels, small.cell_strides)]
    assert shapes[-1] == (128, 8, 8)


def test_imagenet_feature_taps():
    net = on_meta(NetworkImageNet, "PDARTS")
    assert net.reduction_cells == [4, 9] and net.aux_cell_index == 9
    assert [(net.cell_channels[i], net.cell_strides[i]) for i in (3, 8, 13)] == [(192, 8), (384, 16), (768, 32)]

    torch.manual_seed(0)
    small = NetworkImageNet("PDARTS", C=8, num_classes=5).eval()  # L=14; channels scale by 8/48
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert small.stem0(x).shape == (1, 8, 16, 24)
        outs = list(small.iter_cell_outputs(x))
        assert [tuple(outs[i].shape[1:]) for i in (3, 8, 13)] == [(32, 8, 12), (64, 4, 6), (128, 2, 3)]
        expected = [(c, 64 // s, 96 // s) for c, s in zip(small.cell_channels, small.cell_strides)]
        assert [tuple(o.shape[1:]) for o in outs] == expected
        assert torch.equal(small.forward_features(x), outs[-1])
        assert small(x)[0].shape == (1, 5)


def test_global_pooling_matches_the_authors_avgpool7_at_224():
    net = on_meta(NetworkImageNet, "PDARTS")
    assert not list(net.global_pooling.parameters())
    final_map = torch.randn(2, 768, 7, 7)
    torch.testing.assert_close(net.global_pooling(final_map), F.avg_pool2d(final_map, 7))


@pytest.mark.parametrize(
    "network, size, rule",
    [
        pytest.param(lambda: tiny_cifar(), (30, 32), "multiples of 4", id="cifar"),
        pytest.param(lambda: NetworkImageNet("PDARTS", C=8, layers=5), (200, 224), "multiples of 32", id="imagenet"),
    ],
)
def test_bad_input_size_raises_a_helpful_value_error(network, size, rule):
    net = network().eval()
    with pytest.raises(ValueError, match=rule) as error:
        net(torch.randn(1, 3, *size))
    assert f"{size[0]}x{size[1]}" in str(error.value)


def test_auxiliary_head_rejects_maps_it_cannot_reduce_to_1x1():
    net = tiny_cifar(auxiliary=True).train()
    with pytest.raises(ValueError, match="auxiliary head.*16x16"):
        net(torch.randn(2, 3, 64, 64))
    assert net.eval()(torch.randn(1, 3, 64, 64))[0].shape == (1, 10)  # no aux head in eval


def test_drop_path_zeroes_whole_samples_and_rescales_the_rest():
    torch.manual_seed(0)
    out = drop_path(torch.ones(200, 3, 2, 2), 0.25)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / 0.75).all(1)
    assert bool((dropped | kept).all()) and 0 < int(dropped.sum()) < 200
    x = torch.randn(4, 3, 2, 2)
    assert drop_path(x, 0.0) is x
    with pytest.raises(ValueError):
        drop_path(x, 1.0)


def cell_of(normal: list[tuple[str, int]]) -> EvalCell:
    """A normal cell (4 channels) with the given pairs; output = concat of all nodes."""
    nodes = list(range(2, 2 + len(normal) // 2))
    genotype = Genotype.make(normal, nodes, normal, nodes)
    torch.manual_seed(0)
    return EvalCell(genotype, 4, 4, 4, reduction=False, reduction_prev=False)


def test_cell_drops_whole_samples_of_a_branch_in_training():
    cell = cell_of([("avg_pool_3x3", 0), ("skip_connect", 1)]).train()
    s0, s1 = torch.randn(32, 4, 6, 6), torch.randn(32, 4, 6, 6)
    torch.manual_seed(1)
    node = cell(s0, s1, drop_prob=0.5)
    pooled, identity = cell.ops[0](cell.preprocess0(s0)), cell.preprocess1(s1)  # train-mode BN: batch stats
    branch = node - identity
    dropped = branch.flatten(1).abs().amax(1) == 0  # identity + 0 - identity: exactly zero
    assert 0 < int(dropped.sum()) < 32
    torch.testing.assert_close(branch[~dropped], pooled[~dropped] / 0.5)


def test_stride_1_identity_branches_are_never_dropped():
    cell = cell_of([("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 2), ("skip_connect", 0)]).train()
    s0, s1 = torch.randn(16, 4, 6, 6), torch.randn(16, 4, 6, 6)
    reference = cell(s0, s1, drop_prob=0.0)
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.equal(cell(s0, s1, drop_prob=0.9), reference)


def test_network_drop_path_is_random_in_training_only():
    net = tiny_cifar()
    x = torch.randn(4, 3, 32, 32)

    def logits(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return net(x)[0]

    net.train()
    assert torch.equal(logits(0), logits(1))  # p = 0: nothing random
    net.drop_path_prob = 0.3
    assert not torch.allclose(logits(0), logits(1))
    torch.testing.assert_close(logits(2), logits(2))
    net.eval()
    assert torch.equal(logits(0), logits(1))

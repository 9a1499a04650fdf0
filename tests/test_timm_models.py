"""timm models: registry, configs, exact sizes, the timm API, feature taps, aux head and checkpoint loading.

Sizes that are at stake are counted on the meta device; behaviour is checked on tiny networks
(C=8, 5 cells: reductions at cells 1 and 3).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models._manipulate import group_parameters

import backbones  # noqa: F401  (registers the models)
from backbones.timm_pdarts import MODEL_NAMES, PUBLISHED_GENOTYPES, checkpoint_filter_fn
from pdarts_wild.genotype import genotype_record, write_genotype_file
from pdarts_wild.networks import NetworkImageNet, count_parameters
from pdarts_wild.zoo import GENOTYPES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import model_info as info_tool  # noqa: E402  (tools/model_info.py)

TINY = dict(C=8, layers=5)


def tiny(name: str, seed: int = 0, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, **{**TINY, **kwargs})


def on_meta(name: str, **kwargs: object) -> torch.nn.Module:
    return timm.create_model(name, device="meta", **kwargs)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_published_genotype_is_registered_in_three_settings():
    assert sorted(timm.list_models(module="timm_pdarts")) == sorted(MODEL_NAMES)
    assert len(MODEL_NAMES) == 3 * len(PUBLISHED_GENOTYPES) == 18
    for name in ["pdarts_c10", "pdarts_c100", "pdarts_imagenet", "darts_v1_c10", "darts_v2_imagenet",
                 "pc_darts_cifar_c100", "pc_darts_image_imagenet", "opp_darts_c10"]:
        assert name in MODEL_NAMES


@pytest.mark.parametrize(
    "name, expected",
    [("pdarts_c10", 3_433_798), ("pdarts_imagenet", 4_944_352), ("darts_v2_c10", 3_349_342),
     ("pc_darts_image_imagenet", 5_342_464), ("pdarts_c100", 3_485_728), ("opp_darts_imagenet", 4_967_776)],
)
def test_exact_parameter_counts(name, expected):
    assert n_params(on_meta(name)) == expected
    with_aux = on_meta(name, auxiliary=True)
    assert count_parameters(with_aux) == expected < n_params(with_aux)


@pytest.mark.parametrize(
    "genotype, params, macs, published, tolerance",
    [("PDARTS", 4_944_352, 542_819_328, 557e6, 0.03), ("DARTS_V2", 4_718_752, 529_911_552, 574e6, 0.08),
     ("PC_DARTS_image", 5_342_464, 581_627_328, 597e6, 0.03)],
)
def test_model_info_imagenet_sizes_against_the_papers(genotype, params, macs, published, tolerance, capsys):
    assert info_tool.main([genotype, "--net", "imagenet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"params": params, "macs": macs}
    assert abs(macs - published) / published < tolerance  # the papers' counter is unknown (spec §11)


def test_model_info_counts_the_multiply_adds_of_every_conv_and_linear_layer():
    torch.manual_seed(0)
    net = NetworkImageNet("PC_DARTS_cifar", C=8, layers=5, num_classes=7).eval()
    macs = []

    def count(module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        fan_in = module.weight[0].numel()  # in-channels per group x kernel area, or in-features
        macs.append(output.numel() * fan_in)

    for module in net.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(count)
    with torch.no_grad():
        net(torch.randn(1, 3, 96, 96))
    assert info_tool.model_info("PC_DARTS_cifar", "imagenet", num_classes=7, channels=8, layers=5,
                                input_size=96) == {"params": count_parameters(net), "macs": sum(macs)}


def test_model_info_text_output_and_one_line_errors(tmp_path, capsys):
    path = tmp_path / "genotype.json"
    write_genotype_file(path, genotype_record(GENOTYPES["PDARTS"]))
    assert info_tool.main([str(path), "--net", "cifar", "--num-classes", "100"]) == 0
    assert "3,485,728" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{not json")
    for genotype in ["NOT_A_GENOTYPE", str(tmp_path / "bad.json"), str(tmp_path / "missing.json")]:
        assert info_tool.main([genotype, "--net", "cifar"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err


@pytest.mark.parametrize(
    "name, classes, size, pool, mean, first_conv",
    [
        ("pdarts_c10", 10, (3, 32, 32), (8, 8), (0.49139968, 0.48215827, 0.44653124), "stem.0"),
        ("darts_v2_c100", 100, (3, 32, 32), (8, 8), (0.5071, 0.4867, 0.4408), "stem.0"),
        ("pc_darts_image_imagenet", 1000, (3, 224, 224), (7, 7), (0.485, 0.456, 0.406), "stem0.0"),
    ],
)
def test_pretrained_cfg(name, classes, size, pool, mean, first_conv):
    model = on_meta(name)
    cfg = model.pretrained_cfg
    assert (cfg["num_classes"], cfg["input_size"], cfg["pool_size"], cfg["mean"]) == (classes, size, pool, mean)
    assert cfg["first_conv"] == first_conv and cfg["classifier"] == "classifier"
    assert cfg["crop_pct"] == (0.875 if classes == 1000 else 1.0) and cfg["interpolation"] == "bilinear"
    assert model.num_classes == classes and model.in_chans == 3
    assert f"{first_conv}.weight" in model.state_dict() and model.get_classifier().out_features == classes
    assert timm.data.resolve_data_config(model=model)["input_size"] == size


@pytest.mark.parametrize("name, size", [("pdarts_c10", 32), ("darts_v1_imagenet", 64)])
def test_forward_backward_reach_every_parameter(name, size):
    model = tiny(name, num_classes=7).train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_forward_features_and_head_compose_to_forward():
    model = tiny("pdarts_c10").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, 8, 8) == (2, 128, 8, 8)
        torch.testing.assert_close(model.forward_head(features), model(x))
        pre_logits = model.forward_head(features, pre_logits=True)
        torch.testing.assert_close(pre_logits, features.mean((2, 3)))
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), pre_logits)
        model.reset_classifier(5)
        assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5
        model.reset_classifier(0, "")
        assert model(x).shape == features.shape


def test_global_pool_and_num_classes_options():
    x = torch.randn(1, 3, 32, 32)
    model = tiny("pdarts_c10", global_pool="catavgmax").eval()
    assert model.head_hidden_size == 2 * model.num_features == model.get_classifier().in_features
    assert model(x).shape == (1, 10)
    assert tiny("pdarts_c10", num_classes=0).eval()(x).shape == (1, model.num_features)
    assert tiny("pdarts_c10", num_classes=0, global_pool="").eval()(x).shape == (1, 128, 8, 8)


def test_drop_rate_and_drop_path_rate():
    model = tiny("pdarts_c10", drop_rate=0.5, drop_path_rate=0.2).train()
    assert model.head_drop.p == 0.5
    assert model.drop_path_rate == model.drop_path_prob == 0.2
    x = torch.randn(4, 3, 32, 32)
    model.drop_path_prob = 0.0  # a training loop ramps it; dropout before the classifier remains
    torch.manual_seed(0)
    first = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(first, model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    with pytest.raises(ValueError, match="drop_path_rate"):
        tiny("pdarts_c10", drop_path_rate=1.0)


def test_auxiliary_head_is_an_option_returning_a_pair_in_training_only():
    x = torch.randn(2, 3, 32, 32)
    assert isinstance(tiny("pdarts_c10").train()(x), torch.Tensor)  # default: no aux head
    model = tiny("pdarts_c10", auxiliary=True)
    logits, aux_logits = model.train()(x)
    assert logits.shape == aux_logits.shape == (2, 10)
    assert model.eval()(x).shape == (2, 10)
    model.reset_classifier(3)
    logits, aux_logits = model.train()(x)
    assert logits.shape == aux_logits.shape == (2, 3)


def test_features_only_matches_feature_info():
    imagenet = timm.create_model("pdarts_imagenet", features_only=True, device="meta")
    assert imagenet.feature_info.channels() == [48, 192, 384, 768]
    assert imagenet.feature_info.reduction() == [4, 8, 16, 32]
    assert imagenet.feature_info.module_name() == ["stem0", "cells.3", "cells.8", "cells.13"]
    cifar = timm.create_model("pdarts_c10", features_only=True, device="meta")
    assert cifar.feature_info.channels() == [144, 288, 576]
    assert cifar.feature_info.reduction() == [1, 2, 4]
    assert cifar.feature_info.module_name() == ["cells.5", "cells.12", "cells.19"]

    for name, size, taps in [("darts_v2_imagenet", (64, 96), 4), ("pdarts_c100", (32, 32), 3)]:
        model = tiny(name, features_only=True).eval()
        with torch.no_grad():
            outputs = model(torch.randn(1, 3, *size))
        info = model.feature_info
        assert len(outputs) == taps
        assert [tuple(o.shape[1:]) for o in outputs] == [
            (c, size[0] // r, size[1] // r) for c, r in zip(info.channels(), info.reduction())
        ]
    picked = tiny("pdarts_imagenet", features_only=True, out_indices=(1, 3))
    assert picked.feature_info.reduction() == [8, 32]


def test_grad_checkpointing_gives_the_same_outputs_and_gradients():
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for enable in (False, True):
        model = tiny("pdarts_c10", drop_path_rate=0.3).train()
        model.set_grad_checkpointing(enable)
        torch.manual_seed(1)
        model(x).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(checkpointed, plain)


def test_group_matcher_groups_stem_cells_and_head():
    model = on_meta("pdarts_imagenet")
    groups = group_parameters(model, model.group_matcher())
    assert len(groups) == 1 + 14 + 1  # stems, each cell, the classifier
    assert any(name.startswith("stem1.") for name in groups[0])
    assert groups[len(groups) - 1] == ["classifier.weight", "classifier.bias"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_matches_eager_and_keeps_the_aux_pair():
    model = tiny("pc_darts_cifar_c10", auxiliary=True).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
        logits, aux_logits = scripted.train()(x)
    assert logits.shape == aux_logits.shape == (2, 10)


def test_device_dtype_and_in_chans():
    model = timm.create_model("pdarts_c10", device="meta", dtype=torch.float64)
    assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
    assert all(p.dtype == torch.float64 for p in model.parameters())
    gray = tiny("pdarts_imagenet", in_chans=1).eval()
    assert gray.stem0[0].in_channels == 1 and gray(torch.randn(1, 1, 64, 64)).shape == (1, 1000)
    with pytest.raises(TypeError):
        timm.create_model("pdarts_c10", not_an_argument=1)


def test_genotype_from_a_name_a_string_or_a_file(tmp_path):
    path = tmp_path / "genotype.json"
    write_genotype_file(path, genotype_record(GENOTYPES["DARTS_V2"], algorithm="darts"))
    expected = n_params(on_meta("darts_v2_c10"))
    for spec in ("DARTS_V2", GENOTYPES["DARTS_V2"].to_string(), str(path)):
        model = on_meta("pdarts_c10", genotype=spec)
        assert n_params(model) == expected == 3_349_342
        assert [type(op).__name__ for op in model.cells[0].ops] == ["SepConv"] * 5 + ["Identity"] * 2 + ["DilConv"]
    assert n_params(on_meta("pdarts_imagenet", genotype=str(path))) == 4_718_752


# ------------------------------------------------------------------------------------------ checkpoints


def trained_like(name: str, **kwargs: object) -> torch.nn.Module:
    """A tiny model whose BN running statistics are not the initial ones."""
    model = tiny(name, seed=3, **kwargs).train()
    size = 224 if "imagenet" in name else 32  # the sizes the aux head accepts
    with torch.no_grad():
        model(torch.randn(4, 3, size, size))
    return model.eval()


def authors_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The P-DARTS authors' key names: cells' ``ops`` are ``_ops`` there."""
    return {k.replace(".ops.", "._ops."): v for k, v in state_dict.items()}


def load(name: str, path, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(99)  # another initialisation than the source's
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY, **kwargs)
    return model.eval()


def assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module, size: int) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("auxiliary", [False, True])
def test_authors_cifar_checkpoint_loads_key_for_key(tmp_path, auxiliary):
    source = trained_like("pdarts_c10", auxiliary=True)
    authors = authors_layout(source.state_dict())
    assert "cells.0._ops.1.op.1.weight" in authors and "auxiliary_head.features.2.weight" in authors
    path = tmp_path / "model.pt"
    torch.save(authors, path)

    model = load("pdarts_c10", path, auxiliary=auxiliary)
    mapped = checkpoint_filter_fn(torch.load(path, weights_only=True), model)
    assert set(mapped) == set(model.state_dict())  # nothing missing, nothing unexpected
    for key, value in model.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert_same_outputs(model, source, 32)


def test_authors_imagenet_checkpoint_from_data_parallel_loads(tmp_path):
    source = trained_like("pdarts_imagenet", auxiliary=True)
    path = tmp_path / "model_best.pth.tar"
    wrapped = {f"module.{k}": v for k, v in authors_layout(source.state_dict()).items()}
    torch.save({"epoch": 250, "state_dict": wrapped, "best_acc_top1": 75.6}, path)

    model = load("pdarts_imagenet", path)
    mapped = checkpoint_filter_fn(torch.load(path, weights_only=True), model)
    assert set(mapped) == set(model.state_dict())
    assert_same_outputs(model, source, 64)
    with_aux = load("pdarts_imagenet", path, auxiliary=True).train()
    x = torch.randn(2, 3, 224, 224)  # the aux head needs the 7x7 map of a 224x224 input
    for ours, theirs in zip(with_aux(x), source.train()(x)):  # (logits, aux_logits)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_own_training_checkpoint_loads_and_new_classes_drop_the_classifiers(tmp_path):
    source = trained_like("darts_v2_c10", auxiliary=True)
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 9}, path)
    assert_same_outputs(load("darts_v2_c10", path), source, 32)

    other = load("darts_v2_c10", path, num_classes=5, auxiliary=True)
    assert other.get_classifier().out_features == other.auxiliary_head.classifier.out_features == 5
    for key, value in other.state_dict().items():
        if "classifier" not in key:
            assert torch.equal(value, source.state_dict()[key]), key


def test_channels_last_training_gradient_stays_channels_last_through_timms_pooling() -> None:
    """timm's global pooling is a mean, whose backward returns NCHW: the head hands the cells a channels-last
    gradient (a mixed layout would send the rest of the CPU backward pass to slow kernels)."""
    model = tiny("pdarts_c10").to(memory_format=torch.channels_last).train()
    seen: list[bool] = []
    model.cells[-1].register_full_backward_hook(
        lambda module, grad_in, grad_out: seen.append(grad_out[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    logits, aux = model(x)
    (logits.sum() + aux.sum()).backward()
    assert seen == [True]

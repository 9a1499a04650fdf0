"""tools/bench_train.py: the evaluation networks' training step with and without the speed options."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bench_train  # noqa: E402  (tools/bench_train.py)

TINY = ["--channels", "8", "--layers", "5", "--batch", "4", "--warmup", "0", "--steps", "1"]


def test_json_has_every_variant_against_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "train.json"
    assert bench_train.main([*TINY, "--variants", "channels-last", "--json", str(out)]) == 0
    record = json.loads(out.read_text())["pdarts_c10"]
    assert list(record) == ["plain", "channels-last"]
    assert record["plain"]["speedup"] == 1.0
    for r in record.values():
        assert set(r) == {"step_ms", "img_per_s", "peak_mb", "warmup_s", "speedup"}
        assert r["img_per_s"] == pytest.approx(4 / (r["step_ms"] / 1000)) and r["peak_mb"] > 0
    table = capsys.readouterr().out
    assert "threads 1 | batch 4" in table and "channels-last" in table


def test_plain_timm_model_trains_without_auxiliary_head(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    assert bench_train.main(["--models", "resnet18", "--image-size", "32", *TINY[4:], "--variants", "plain",
                             "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())) == ["resnet18"]


@pytest.mark.parametrize("flags, message", [
    (["--variants", "fast"], "unknown option(s) fast in variant 'fast'"),
    (["--variants", "amp+channels-last"], "amp needs --device cuda"),
    (["--models", "resnet_nope"], "unknown model 'resnet_nope'"),
    (["--models", "pdarts_c10,resnet18"], "--channels and --layers only apply to the DARTS-family models (pdarts_c10, "
                                          "...): resnet18 is a plain timm model"),
    (["--image-size", "30"], "pdarts_c10 cannot train at --image-size 30: TimmNetworkCIFAR needs input height and "
                             "width that are multiples of 4"),
])
def test_bad_options_give_one_line(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_train.main([*TINY, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]

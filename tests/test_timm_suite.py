"""timm's own model test-suite, ``tests/test_models.py`` of the installed timm release, run on our models.

The PyPI wheel has no tests; the sdist has. It is fetched once from PyPI (JSON API, checksum checked)
into ``.cache/timm-<version>/`` at the repository root, and only its ``tests/`` (and the pyproject
holding its pytest settings) are extracted. pytest then runs ``test_models.py`` unchanged in a
subprocess with ``tests/timm_suite_plugin.py``, which registers our models and keeps only their tests.

Of test_models.py's tests, eight select our models (the others pick models by timm module name or need
published weights): test_model_forward, test_model_backward, test_model_forward_features (run for all
18 models) and test_model_default_cfgs, test_model_forward_torchscript, test_model_forward_fx,
test_model_backward_fx, test_model_forward_fx_torchscript (several seconds a model on a 2-core CPU: run
for pdarts_c10 and pdarts_imagenet; ``PDARTS_TIMM_SUITE=full`` runs them for all 18, about 5 minutes).
Every selected test must have run and passed (read from a JUnit XML report). The test is skipped only
when the sdist cannot be downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urljoin
from urllib.request import urlopen

import pytest
import timm

from backbones.timm_pdarts import MODEL_NAMES
from timm_suite_plugin import is_selected

REPO = Path(__file__).resolve().parents[1]
VERSION = timm.__version__
CACHE = REPO / ".cache" / f"timm-{VERSION}"
SELECTING_TESTS = (
    "test_model_forward", "test_model_backward", "test_model_forward_features", "test_model_default_cfgs",
    "test_model_forward_torchscript", "test_model_forward_fx", "test_model_backward_fx",
    "test_model_forward_fx_torchscript",
)


def sdist_location(version: str) -> tuple[str, str]:
    """URL and sha256 of timm's sdist from PyPI's JSON API (the release's page, else the project's)."""
    for api in (f"https://pypi.org/pypi/timm/{version}/json", "https://pypi.org/pypi/timm/json"):
        try:
            with urlopen(api, timeout=60) as response:
                data = json.load(response)
        except URLError:  # HTTPError included: some mirrors serve only the project page
            continue
        files = data.get("releases", {}).get(version) or (data["urls"] if data["info"]["version"] == version else [])
        for file in files:
            if file["packagetype"] == "sdist":
                return urljoin(api, file["url"]), file["digests"]["sha256"]
    raise URLError(f"PyPI's JSON API lists no sdist of timm {version}")


def fetch_sdist(version: str) -> Path:
    """The sdist, downloaded into the cache once; its checksum must match PyPI's."""
    path = CACHE / f"timm-{version}.tar.gz"
    if not path.is_file():
        try:
            url, sha256 = sdist_location(version)
            with urlopen(url, timeout=300) as response:
                data = response.read()
        except (URLError, TimeoutError) as e:
            pytest.skip(f"cannot download timm {version}'s sdist from PyPI: {e}")
        assert hashlib.sha256(data).hexdigest() == sha256, f"checksum mismatch for {url}"
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def extract_tests(sdist: Path, version: str) -> Path:
    """The sdist's ``tests/`` and ``pyproject.toml`` (no ``timm/``: the installed timm is tested)."""
    root = CACHE / f"timm-{version}"
    if not (root / "tests" / "test_models.py").is_file():
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith(f"timm-{version}/tests/") or m.name == f"timm-{version}/pyproject.toml"]
            tar.extractall(CACHE, members=members, filter="data")
    return root


def test_timm_model_suite_passes_for_our_models(tmp_path):
    root = extract_tests(fetch_sdist(VERSION), VERSION)
    report = tmp_path / "report.xml"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "tests"), str(REPO), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_models.py", "-p", "timm_suite_plugin", "-q",
         "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert report.is_file(), run.stdout[-3000:] + run.stderr[-3000:]

    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        test, model = re.fullmatch(r"(\w+)\[\d+-(\w+)\]", case.get("name")).groups()
        outcomes[test, model] = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
    expected = {(t, m) for t in SELECTING_TESTS for m in MODEL_NAMES if is_selected(t, m)}
    assert {"pdarts_c10", "pdarts_imagenet", "pc_darts_image_c100"} <= {m for _, m in expected}
    assert set(outcomes) == expected, f"ran {sorted(set(outcomes) ^ expected)} unexpectedly\n{run.stdout[-3000:]}"
    problems = {case: tags for case, tags in outcomes.items() if tags}
    assert not problems, f"{problems}\n{run.stdout[-5000:]}"
    assert run.returncode == 0, run.stdout[-3000:]

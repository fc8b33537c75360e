"""The HTTP API keeps its OpenAPI contract: Schemathesis (``--checks all``) against ``malvision serve``,
once without an API key and once with one. A short pass (few examples a route, fixed seed) for CI;
``scripts/api_contract.sh`` runs the longer one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corpus.harness import serve_model

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
KEY = "contract-test-key"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SCHEMATHESIS.is_file(), reason="schemathesis not installed (pip install -e '.[test]')"
    ),
]


@pytest.fixture(params=[None, KEY], ids=["no-key", "api-key"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str | None]]:
    key = request.param
    if key is None:
        monkeypatch.delenv("MALVISION_API_KEY", raising=False)
    else:
        monkeypatch.setenv("MALVISION_API_KEY", key)
    for url in serve_model("default", tmp_path):
        yield url, key


def test_schemathesis_finds_no_failure(served: tuple[str, str | None], tmp_path: Path) -> None:
    url, key = served
    cmd = [
        str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "8",
        "--seed", "1", "--wait-for-schema", "30", "--no-color",
    ]  # fmt: skip
    if key:
        cmd += ["-H", f"X-API-Key: {key}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    tail = "\n".join(done.stdout.splitlines()[-40:])
    assert done.returncode == 0, tail
    assert "No issues found" in done.stdout, tail
    shutil.rmtree(tmp_path / ".hypothesis", ignore_errors=True)

"""The web page in a real browser: ``malvision serve`` in a subprocess, headless Chromium via Selenium.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: ``apt-get install -y chromium chromium-driver``)
and the ``selenium`` package; skipped with the reason when one is missing.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corpus import pe_with_text

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
MALVISION = Path(sys.executable).with_name("malvision")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="/usr/bin/chromium absent (apt-get install -y chromium)"
    ),
    pytest.mark.skipif(
        not CHROMEDRIVER.is_file(), reason="chromedriver absent (apt-get install -y chromium-driver)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_detector: Path, tmp_path: Path) -> Iterator[str]:
    """``malvision serve`` on a free loopback port; its URL once /healthz answers."""
    yield from _serve(tiny_detector, tmp_path)


@pytest.fixture
def features_server(tmp_path: Path) -> Iterator[str]:
    """The same with an untrained PE-features detector (mlp), which has no byte-level explanation."""
    import torch

    from malvision.checkpoint import save_checkpoint
    from malvision.models import create_model

    torch.manual_seed(0)
    model = create_model("mlp", in_kind="features", n_classes=2, hidden=[8]).eval()
    path = save_checkpoint(tmp_path / "features.pt", model, model_name="mlp", model_kwargs={"hidden": [8]},
                           in_kind="features", n_classes=2, vocab_size=None, spec={"kind": "features"},
                           classes=["benign", "malware"], seed=0, manifest_hash=None)  # fmt: skip
    yield from _serve(path, tmp_path)


def _serve(model: Path, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [MALVISION, "serve", "--port", str(port), "--model", str(model), "--timeout", "60"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed (pip install selenium)"
    )
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,1900",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_shows_verdict_heat_map_and_ranges(server: str, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    sample = tmp_path / "sample.exe"
    sample.write_bytes(pe_with_text(random.Random(7).randbytes(0x3000)))
    notes = tmp_path / "notes.txt"
    notes.write_text("plain text, not a program\n" * 40)

    driver.get(server + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model: cnn"))

    driver.find_element(By.ID, "file").send_keys(str(sample))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    verdict = driver.find_element(By.ID, "verdict").text.lower()  # type: ignore[attr-defined]
    assert verdict in ("benign", "malware")
    assert driver.find_element(By.ID, "file-name").text == "sample.exe"  # type: ignore[attr-defined]
    score = float(driver.find_element(By.ID, "score").text)  # type: ignore[attr-defined]
    assert 0.0 <= score <= 1.0
    rows = driver.find_elements(By.CSS_SELECTOR, "#ranges tbody tr")  # type: ignore[attr-defined]
    assert rows and rows[0].find_elements(By.TAG_NAME, "td")[5].text in (
        "headers",
        ".text",
        "headers + .text",
    )
    sections = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#sections tbody td:first-child")]  # type: ignore[attr-defined]
    assert sections == ["headers", ".text"]
    wait.until(
        lambda d: d.execute_script(
            "const i = document.getElementById('heatmap'); return i.complete && i.naturalWidth > 0;"
        )
    )
    assert not driver.find_element(By.ID, "error").is_displayed()  # type: ignore[attr-defined]
    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000  # type: ignore[attr-defined]
    if out := os.environ.get("MALVISION_E2E_SCREENSHOT"):  # for a person to look at
        shutil.copy(shot, out)

    # A file the model was not made for: an honest "unknown" with its reason.
    driver.find_element(By.ID, "file").send_keys(str(notes))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "file-name").text == "notes.txt")
    assert driver.find_element(By.ID, "verdict").text.lower() == "unknown"  # type: ignore[attr-defined]
    assert "text file" in driver.find_element(By.ID, "reason").text  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "note").is_displayed()  # type: ignore[attr-defined]


def test_a_features_model_shows_its_verdict_and_top_features(
    features_server: str, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from malvision.convert.pefeatures import FEATURE_NAMES

    driver = browser
    sample = tmp_path / "sample.exe"
    sample.write_bytes(pe_with_text(random.Random(7).randbytes(0x3000)))
    driver.get(features_server + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model: mlp"))
    driver.find_element(By.ID, "file").send_keys(str(sample))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    assert driver.find_element(By.ID, "verdict").text.lower() in ("benign", "malware")  # type: ignore[attr-defined]
    assert 0.0 <= float(driver.find_element(By.ID, "score").text) <= 1.0  # type: ignore[attr-defined]
    rows = driver.find_elements(By.CSS_SELECTOR, "#features tbody tr")  # type: ignore[attr-defined]
    assert len(rows) == 5
    assert all(r.find_elements(By.TAG_NAME, "td")[1].text in FEATURE_NAMES for r in rows)
    assert not driver.find_element(By.ID, "range-box").is_displayed()  # type: ignore[attr-defined]
    assert "PE feature" in driver.find_element(By.ID, "caption").text  # type: ignore[attr-defined]
    wait.until(
        lambda d: d.execute_script(
            "const i = document.getElementById('heatmap'); return i.complete && i.naturalWidth > 0;"
        )
    )
    assert not driver.find_element(By.ID, "error").is_displayed()  # type: ignore[attr-defined]

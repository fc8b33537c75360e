"""The web page in a real browser: ``malvision serve`` in a subprocess, headless Chromium via Selenium.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: ``apt-get install -y chromium chromium-driver``)
and the ``selenium`` package; skipped with the reason when one is missing.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corpus import pe_with_text
from corpus.harness import serve_model

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


@pytest.fixture
def server(tiny_detector: Path, tmp_path: Path) -> Iterator[str]:
    """``malvision serve`` on a free loopback port; its URL once /healthz answers."""
    yield from serve_model(tiny_detector, tmp_path)


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
    yield from serve_model(path, tmp_path)


@pytest.fixture
def default_server(tmp_path: Path) -> Iterator[str]:
    """``malvision serve`` with the bundled default model (trees on PE features, with the card's bands)."""
    yield from serve_model("default", tmp_path)


def real_pes() -> list[Path]:
    """Real Windows PE files every environment with pip has: distlib's script launchers (32/64-bit,
    console and GUI), shipped inside pip."""
    import pip._vendor.distlib as distlib

    found = [Path(distlib.__file__).with_name(n) for n in ("w32.exe", "t32.exe", "t64.exe")]
    if not all(p.is_file() for p in found):
        pytest.skip("pip's distlib launchers (w32.exe, t32.exe, t64.exe) are not installed")
    return found


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
    score = float(driver.find_element(By.ID, "score").text.split(",")[0])  # type: ignore[attr-defined]  # the score, then its threshold
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

    from malvision.convert.featurelabels import FEATURE_LABELS

    driver = browser
    sample = tmp_path / "sample.exe"
    sample.write_bytes(pe_with_text(random.Random(7).randbytes(0x3000)))
    driver.get(features_server + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model: mlp"))
    driver.find_element(By.ID, "file").send_keys(str(sample))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    assert driver.find_element(By.ID, "verdict").text.lower() in ("benign", "malware")  # type: ignore[attr-defined]
    assert 0.0 <= float(driver.find_element(By.ID, "score").text.split(",")[0]) <= 1.0  # type: ignore[attr-defined]
    rows = driver.find_elements(By.CSS_SELECTOR, "#features tbody tr")  # type: ignore[attr-defined]
    assert len(rows) == 5
    labels = {v.label for v in FEATURE_LABELS.values()}
    assert all(r.find_elements(By.TAG_NAME, "td")[1].text in labels for r in rows)
    assert not driver.find_element(By.ID, "range-box").is_displayed()  # type: ignore[attr-defined]
    assert "byte plot" in driver.find_element(By.ID, "caption").text  # type: ignore[attr-defined]
    wait.until(
        lambda d: d.execute_script(
            "const i = document.getElementById('heatmap'); return i.complete && i.naturalWidth > 0;"
        )
    )
    assert not driver.find_element(By.ID, "error").is_displayed()  # type: ignore[attr-defined]


def _image_loaded(driver: object, element_id: str) -> bool:
    return bool(
        driver.execute_script(  # type: ignore[attr-defined]
            f"const i = document.getElementById('{element_id}'); return i.complete && i.naturalWidth > 0;"
        )
    )


def test_a_real_pe_shows_band_score_with_threshold_byte_plot_and_named_features(
    default_server: str, browser: object, tmp_path: Path
) -> None:
    """The bundled default on a real PE file: verdict badge, band, the score with its threshold, the
    byte plot image and features by the names analysts use (with a description on hover)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from malvision.convert.featurelabels import FEATURE_LABELS

    driver = browser
    pe = real_pes()[0]
    driver.get(default_server + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 90)
    wait.until(lambda d: "bands: suspicious from" in d.find_element(By.ID, "model").text)
    driver.find_element(By.ID, "file").send_keys(str(pe))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    assert driver.find_element(By.ID, "file-name").text == pe.name  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "verdict").text.lower() in ("benign", "malware")  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "band").text.lower() in ("clean", "suspicious", "malicious")  # type: ignore[attr-defined]
    score = driver.find_element(By.ID, "score").text  # type: ignore[attr-defined]
    assert re.fullmatch(r"0\.\d{4}, threshold 0\.\d{4}: (below|at or above)", score), score
    assert "raw model probability" in driver.find_element(By.ID, "target").text  # type: ignore[attr-defined]
    wait.until(lambda d: _image_loaded(d, "heatmap"))
    width = driver.execute_script("return document.getElementById('heatmap').naturalWidth")  # type: ignore[attr-defined]
    assert width >= 1000  # the byte plot and the feature bars side by side
    names = driver.find_elements(By.CSS_SELECTOR, "#features tbody td.feature-name")  # type: ignore[attr-defined]
    labels = {v.label for v in FEATURE_LABELS.values()}
    assert len(names) == 5 and all(n.text in labels for n in names)
    assert not any(n.text in FEATURE_LABELS for n in names if n.text not in labels)  # never a raw id
    assert all(n.get_attribute("title") for n in names)  # a description on hover
    sections = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#sections tbody td:first-child")]  # type: ignore[attr-defined]
    assert sections[0] == "headers" and ".text" in sections
    assert not driver.find_element(By.ID, "error").is_displayed()  # type: ignore[attr-defined]
    if out := os.environ.get("MALVISION_E2E_SCREENSHOT"):
        driver.save_screenshot(out)  # type: ignore[attr-defined]


def test_three_files_give_a_sortable_table_whose_rows_open_their_explanation(
    default_server: str, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    pes = real_pes()
    driver.get(default_server + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 90)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model: lgbm"))
    driver.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in pes))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "table-box").is_displayed())
    rows = driver.find_elements(By.CSS_SELECTOR, "#scan-table tbody tr")  # type: ignore[attr-defined]
    assert len(rows) == 3
    cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    assert sorted(c[0] for c in cells) == sorted(p.name for p in pes)
    for c in cells:
        assert c[1].lower() in ("benign", "malware") and c[2].lower() in ("clean", "suspicious", "malicious")
        assert 0.0 <= float(c[3]) <= 1.0 and int(c[5].replace(",", "")) > 0 and len(c[6]) == 64
    scores = [float(c[3]) for c in cells]
    assert scores == sorted(scores, reverse=True)  # sorted by score, highest first
    driver.find_element(By.CSS_SELECTOR, "#scan-table th[data-key='size']").click()  # type: ignore[attr-defined]
    sizes = [
        int(r.find_elements(By.TAG_NAME, "td")[5].text.replace(",", ""))
        for r in driver.find_elements(By.CSS_SELECTOR, "#scan-table tbody tr")
    ]  # type: ignore[attr-defined]
    assert sizes == sorted(sizes)
    first = driver.find_elements(By.CSS_SELECTOR, "#scan-table tbody tr")[0]  # type: ignore[attr-defined]
    name = first.find_elements(By.TAG_NAME, "td")[0].text
    first.click()
    wait.until(
        lambda d: (
            d.find_element(By.ID, "result").is_displayed() and d.find_element(By.ID, "file-name").text == name
        )
    )
    wait.until(lambda d: _image_loaded(d, "heatmap"))
    assert driver.find_element(By.ID, "table-box").is_displayed()  # type: ignore[attr-defined]  # the table stays
    if out := os.environ.get("MALVISION_E2E_SCREENSHOT_MANY"):
        driver.save_screenshot(out)  # type: ignore[attr-defined]


def test_a_sample_zip_with_its_password_lists_its_entries(
    default_server: str, browser: object, tmp_path: Path
) -> None:
    import zipfile

    import pyzipper
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pes = real_pes()
    sample = tmp_path / "samples.zip"
    with pyzipper.AESZipFile(sample, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"infected")
        for p in pes[:2]:
            zf.writestr(f"launchers/{p.name}", p.read_bytes())
    driver = browser
    driver.get(default_server + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 90)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model: lgbm"))
    driver.find_element(By.ID, "zip-password").send_keys("infected")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "file").send_keys(str(sample))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "table-box").is_displayed())
    paths = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#scan-table tbody td.path")]  # type: ignore[attr-defined]
    assert sorted(paths) == sorted(f"samples.zip!launchers/{p.name}" for p in pes[:2])
    driver.find_elements(By.CSS_SELECTOR, "#scan-table tbody tr")[0].click()  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    assert driver.find_element(By.ID, "file-name").text == paths[0]  # type: ignore[attr-defined]
    wait.until(lambda d: _image_loaded(d, "heatmap"))
    assert not driver.find_element(By.ID, "error").is_displayed()  # type: ignore[attr-defined]


def test_rows_of_files_with_one_name_open_their_own_file(
    default_server: str, browser: object, tmp_path: Path
) -> None:
    """Two different files both called t64.exe: each row opens its own (the page maps records to files by
    their place in the request; by name it opened the first file for both). Headers sort from the keyboard."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    pes = real_pes()
    twins = []
    for i, src in enumerate(pes[1:3]):
        (tmp_path / f"d{i}").mkdir()
        twins.append(tmp_path / f"d{i}" / "t64.exe")
        twins[-1].write_bytes(src.read_bytes())
    driver = browser
    driver.get(default_server + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 90)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model: lgbm"))
    driver.find_element(By.ID, "file").send_keys("\n".join(str(p) for p in twins))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "table-box").is_displayed())
    for k in range(2):
        row = driver.find_elements(By.CSS_SELECTOR, "#scan-table tbody tr")[k]  # type: ignore[attr-defined]
        sha = row.find_elements(By.TAG_NAME, "td")[6].text
        row.send_keys(Keys.ENTER)
        wait.until(lambda d, sha=sha: d.find_element(By.ID, "sha256").text == sha)
    header = driver.find_element(By.CSS_SELECTOR, "#scan-table th[data-key='size']")  # type: ignore[attr-defined]
    header.send_keys(Keys.ENTER)
    assert header.get_attribute("aria-sort") == "ascending"
    # Space and Enter typed in the zip password field stay there; on the drop zone they open the chooser
    driver.execute_script(  # type: ignore[attr-defined]
        "window.picks = 0; document.getElementById('file').click = () => { window.picks += 1; };"
    )
    field = driver.find_element(By.ID, "zip-password")  # type: ignore[attr-defined]
    field.send_keys("my pass", Keys.ENTER)
    assert field.get_attribute("value") == "my pass"
    assert driver.execute_script("return window.picks") == 0  # type: ignore[attr-defined]
    driver.find_element(By.ID, "drop").send_keys(Keys.ENTER)  # type: ignore[attr-defined]
    assert driver.execute_script("return window.picks") == 1  # type: ignore[attr-defined]
    # A slow answer to an earlier request does not replace the later one's
    driver.execute_script(  # type: ignore[attr-defined]
        "const real = window.fetch; let n = 0; window.fetch = (...a) => { n += 1; const p = real(...a);"
        " return n === 1 ? p.then((r) => new Promise((ok) => setTimeout(() => ok(r), 1500))) : p; };"
    )
    field.clear()
    driver.find_element(By.ID, "file").send_keys(str(pes[0]))  # type: ignore[attr-defined]  # slowed
    driver.find_element(By.ID, "file").send_keys(str(pes[1]))  # type: ignore[attr-defined]
    wait.until(lambda d: d.find_element(By.ID, "file-name").text == pes[1].name)
    time.sleep(2.5)  # past the slowed answer
    assert driver.find_element(By.ID, "file-name").text == pes[1].name  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("page", "drawn"),
    [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id^='operation/']")],
)
def test_api_docs_render_from_the_server_alone(server: str, browser: object, page: str, drawn: str) -> None:
    """Swagger UI and ReDoc draw the API's routes from files the server holds, with nothing refused by the
    page's CSP (which allows no other origin)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.execute_cdp_cmd(  # type: ignore[attr-defined]  # listen from the first script on
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.refused = []; document.addEventListener('securitypolicyviolation',"
            " e => window.refused.push(e.violatedDirective + ' ' + e.blockedURI));"
        },
    )
    driver.get(server + page)  # type: ignore[attr-defined]
    WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, drawn)) >= 3)
    text = driver.find_element(By.TAG_NAME, "body").text.replace("\u200b", "")  # type: ignore[attr-defined]
    assert "/v1/scan" in text and "/healthz" in text
    refused = driver.execute_script("return window.refused")  # type: ignore[attr-defined]
    # ReDoc's "API docs by Redocly" badge points at its CDN: decoration, and the CSP keeps it off
    assert [r for r in refused if not r.startswith("img-src https://cdn.redoc.ly/")] == [], refused

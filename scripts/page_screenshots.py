"""Screenshots of the web page for the docs: one file explained, and several files in the table.

    .venv/bin/python scripts/page_screenshots.py [--out docs/img] [--model default] [FILE ...]

Starts ``malvision serve`` on a free loopback port, drives Debian's Chromium (``/usr/bin/chromium``
and ``chromedriver``) through Selenium, drops the first FILE alone, then every FILE together, and
writes ``page-one-file.png`` and ``page-several-files.png`` (atomically). Without FILEs it uses the
real PE launchers shipped inside pip (distlib's w32.exe, t32.exe, t64.exe).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _launchers() -> list[Path]:
    import pip._vendor.distlib as distlib

    return [Path(distlib.__file__).with_name(n) for n in ("w32.exe", "t32.exe", "t64.exe")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("page_screenshots: the page did not get there in time")
        time.sleep(0.2)


def _shot(driver, dest: Path) -> None:  # type: ignore[no-untyped-def]
    """Save a screenshot of the whole page to ``dest`` through a temporary file."""
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(max(900, int(height) + 40), 4000))
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=dest.parent)
    os.close(fd)
    try:
        if not driver.save_screenshot(tmp):
            raise SystemExit(f"page_screenshots: could not save {dest}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {dest}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    files = [f.resolve() for f in (args.files or _launchers())]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"page_screenshots: no such file: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    port = _free_port()
    exe = Path(sys.executable).with_name("malvision")
    server = subprocess.Popen([str(exe), "serve", "--port", str(port), "--model", args.model],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="malvision-chromium-")
    driver = None
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return server.poll() is not None

        _wait(up)
        if server.poll() is not None:
            raise SystemExit("page_screenshots: malvision serve did not start")
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000"):  # fmt: skip
            opts.add_argument(flag)
        chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
        loaded = "const i = document.getElementById('heatmap'); return i.complete && i.naturalWidth > 0;"

        driver.get(url + "/")
        _wait(lambda: driver.find_element(By.ID, "model").text.startswith("model:"))
        driver.find_element(By.ID, "file").send_keys(str(files[0]))
        _wait(lambda: driver.find_element(By.ID, "result").is_displayed() and driver.execute_script(loaded))
        _shot(driver, args.out / "page-one-file.png")

        driver.get(url + "/")
        _wait(lambda: driver.find_element(By.ID, "model").text.startswith("model:"))
        driver.find_element(By.ID, "file").send_keys("\n".join(str(f) for f in files))
        _wait(lambda: driver.find_element(By.ID, "table-box").is_displayed())
        driver.find_elements(By.CSS_SELECTOR, "#scan-table tbody tr")[0].click()
        _wait(lambda: driver.find_element(By.ID, "result").is_displayed() and driver.execute_script(loaded))
        _shot(driver, args.out / "page-several-files.png")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()

"""HTTP API: scan and explain records, upload limit while streaming, queue (503), timeout (504), API key,
JSON errors, the model card, OpenAPI and the offline page."""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from corpus import pe_with_text
from malvision.cli import app as cli_app
from malvision.scan import FIELDS, Scanner
from malvision.server import STATIC, ServerSettings, create_app, model_card
from malvision.server.http import CSP

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


PE = pe_with_text(random.Random(1).randbytes(0x2000))
TEXT = b"just some text, not a program\n" * 20


@pytest.fixture(scope="module")
def scanner(tiny_detector: Path) -> Scanner:
    return Scanner(tiny_detector, backend="torch")


@pytest.fixture
def make_client(scanner: Scanner) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(raise_errors: bool = True, **settings: Any) -> TestClient:
        c = TestClient(create_app(scanner, ServerSettings(**settings)), raise_server_exceptions=raise_errors)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@contextlib.contextmanager
def blocked(scanner: Scanner, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Make ``scan_bytes`` wait until the yielded event is set (set on exit in any case)."""
    release = threading.Event()
    real = scanner.scan_bytes

    def slow(name: str, data: bytes) -> Any:
        release.wait(10)
        return real(name, data)

    monkeypatch.setattr(scanner, "scan_bytes", slow)
    try:
        yield release
    finally:
        release.set()


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def _error(resp: Any, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in resp.text
    return body["error"]


# -- scan ------------------------------------------------------------------------------------------------
def test_scan_one_file_gives_the_scan_json_record(client: TestClient, scanner: Scanner) -> None:
    resp = client.post("/v1/scan", files=[("files", ("a.exe", PE))])
    assert resp.status_code == 200
    (record,) = resp.json()
    assert set(FIELDS) <= set(record)
    assert record == scanner.scan_bytes("a.exe", PE).to_dict() | {"upload": 0}
    assert record["verdict"] in ("benign", "malware") and 0.0 <= record["score"] <= 1.0


def test_scan_several_files_in_order(client: TestClient, tmp_path: Path) -> None:
    files = [("files", ("one.exe", PE)), ("files", ("dir/../notes.txt", TEXT)), ("files", ("empty", b""))]
    resp = client.post("/v1/scan", files=files)
    assert resp.status_code == 200
    records = resp.json()
    assert [r["path"] for r in records] == ["one.exe", "notes.txt", "empty"]  # base names only
    assert [r["upload"] for r in records] == [0, 1, 2]  # what a client maps its files by
    twins = client.post("/v1/scan", files=[("files", ("a.exe", TEXT)), ("files", ("a.exe", PE))]).json()
    assert [(r["path"], r["upload"], r["verdict"] == "unknown") for r in twins] == [
        ("a.exe", 0, True),
        ("a.exe", 1, False),
    ]
    assert records[1]["verdict"] == "unknown" and "text file" in records[1]["reason"]
    assert records[2]["verdict"] == "unknown" and records[2]["reason"] == "empty file"
    # Same verdict as the command line on the same bytes.
    (tmp_path / "one.exe").write_bytes(PE)
    model = str(client.app.state.scanner.model_path)  # type: ignore[attr-defined]
    cli = CliRunner().invoke(cli_app, ["scan", str(tmp_path / "one.exe"), "--model", model, "--json"])
    (cli_record,) = json.loads(cli.stdout)
    assert {k: v for k, v in cli_record.items() if k != "path"} == {
        k: v for k, v in records[0].items() if k not in ("path", "upload")
    }


def test_uploads_never_touch_the_disk(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3 MB upload (Starlette would spool anything over 1 MB to a temp file) stays in memory."""

    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError("upload written to a temporary file")

    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    big = pe_with_text(random.Random(2).randbytes(3 * 1024 * 1024))
    resp = client.post("/v1/scan", files={"files": ("big.exe", big)})
    assert resp.status_code == 200 and resp.json()[0]["size"] == len(big)


# -- limits ---------------------------------------------------------------------------------------------
def test_too_large_upload_is_413(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_upload=4096)
    msg = _error(c.post("/v1/scan", files={"files": ("big", b"x" * 100_000)}), 413)
    assert "4.0 KiB size limit" in msg
    # Without Content-Length (chunked): counted while streaming.
    body, ctype = _multipart({"files": ("big", b"x" * 100_000)})
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))
    _error(c.post("/v1/scan", content=chunks, headers={"content-type": ctype}), 413)
    # Just under the limit passes.
    assert c.post("/v1/scan", files={"files": ("ok", b"x" * 4000)}).status_code == 200


def test_too_many_files_is_422(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_files=2)
    files = [("files", (f"f{i}", TEXT)) for i in range(3)]
    assert "too many files" in _error(c.post("/v1/scan", files=files), 422)


def test_an_overlong_part_header_says_so(client: TestClient) -> None:
    msg = _error(client.post("/v1/scan", files={"files": ("a" * 10_000, TEXT)}), 400)
    assert msg == "malformed multipart body: maximum header size exceeded"


def test_queue_full_is_503(
    make_client: Callable[..., TestClient], scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_client(max_concurrent=1, queue=1)
    limiter = c.app.state.limiter  # type: ignore[attr-defined]
    results: list[int] = []

    def post() -> None:
        results.append(c.post("/v1/scan", files={"files": ("a.exe", PE)}).status_code)

    with blocked(scanner, monkeypatch):
        first = threading.Thread(target=post)
        first.start()
        _wait_for(lambda: limiter.stats()["running"] == 1)
        second = threading.Thread(target=post)  # waits in the queue
        second.start()
        _wait_for(lambda: limiter.stats()["waiting"] == 1)
        resp = c.post("/v1/scan", files={"files": ("a.exe", PE)})
        assert "busy" in _error(resp, 503) and resp.headers["retry-after"] == "1"
        assert {"running": 1, "waiting": 1, "capacity": 2}.items() <= c.get("/healthz").json().items()
    first.join(10)
    second.join(10)
    assert results == [200, 200]
    assert limiter.stats() == {"running": 0, "waiting": 0, "capacity": 2}
    assert c.post("/v1/scan", files={"files": ("a.exe", PE)}).status_code == 200


def test_slow_request_is_504_and_frees_its_place(
    make_client: Callable[..., TestClient], scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_client(timeout=1.0, max_concurrent=1, queue=0)
    limiter = c.app.state.limiter  # type: ignore[attr-defined]
    with blocked(scanner, monkeypatch) as release:
        t0 = time.monotonic()
        assert "longer than 1 s" in _error(c.post("/v1/scan", files={"files": ("a.exe", PE)}), 504)
        assert time.monotonic() - t0 < 5
        # The inference still runs and keeps its place until it ends...
        assert limiter.stats()["running"] == 1
        _error(c.post("/v1/scan", files={"files": ("a.exe", PE)}), 503)
        release.set()
        _wait_for(lambda: limiter.stats()["running"] == 0)
    assert limiter.stats()["waiting"] == 0  # ...then gives it back
    assert c.post("/v1/scan", files={"files": ("a.exe", PE)}).status_code == 200


# -- errors and auth ----------------------------------------------------------------------------------
def test_errors_are_one_json_line(
    make_client: Callable[..., TestClient], scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make_client(raise_errors=False)
    _error(c.get("/nope"), 404)
    _error(c.get("/v1/scan"), 405)
    assert "multipart" in _error(c.post("/v1/scan", json={"files": []}), 415)
    assert "field 'files'" in _error(c.post("/v1/scan", files={"other": ("a", b"abc")}), 400)
    assert "one file" in _error(c.post("/v1/explain", files=[("file", ("a", PE)), ("file", ("b", PE))]), 400)
    assert "method" in _error(c.post("/v1/explain?method=shap", files={"file": ("a", PE)}), 422)
    assert "top_k" in _error(c.post("/v1/explain?top_k=0", files={"file": ("a", PE)}), 422)
    tiny = c.post("/v1/explain", files={"file": ("tiny", b"MZ\0\0")})  # a verdict, nothing explained
    assert (
        tiny.status_code == 200 and tiny.json()["explained"] is False and "too small" in tiny.json()["note"]
    )
    bad = b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\nabc'
    _error(c.post("/v1/scan", content=bad, headers={"content-type": "multipart/form-data; boundary=q"}), 400)

    def crash(name: str, data: bytes) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(scanner, "scan_bytes", crash)
    resp = c.post("/v1/scan", files={"files": ("a.exe", PE)})
    assert "internal error" in _error(resp, 500) and "secret" not in resp.text


def test_api_key(make_client: Callable[..., TestClient]) -> None:
    c = make_client(api_key="s3cret-key")
    files = {"files": ("a.exe", PE)}
    assert "API key" in _error(c.post("/v1/scan", files=files), 401)
    _error(c.post("/v1/scan", files=files, headers={"X-API-Key": "wrong-key"}), 401)
    _error(c.get("/v1/model"), 401)
    _error(c.post("/v1/explain", files={"file": ("a", PE)}), 401)
    assert c.post("/v1/scan", files=files, headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert c.get("/v1/model", headers={"X-API-Key": "s3cret-key"}).status_code == 200
    health = c.get("/healthz")
    assert health.status_code == 200 and health.json()["auth"] is True
    assert c.get("/").status_code == 200  # the page itself is public; it asks for the key
    with pytest.raises(Exception, match="at least 8"):
        ServerSettings(api_key="short")


# -- model, health, docs, page ------------------------------------------------------------------------
def test_healthz_and_model_card(client: TestClient, scanner: Scanner, tiny_detector: Path) -> None:
    health = client.get("/healthz").json()
    assert health == {
        "status": "ok",
        "model": "cnn",
        "auth": False,
        "running": 0,
        "waiting": 0,
        "capacity": 10,
    }
    card = client.get("/v1/model").json()
    assert card["limits"]["max_upload"] == 64 * 1024**2 and card["threshold"] == scanner.threshold
    assert {k: v for k, v in card.items() if k not in ("threshold", "backend", "limits")} == model_card(
        scanner
    )
    info = json.loads(CliRunner().invoke(cli_app, ["info", str(tiny_detector), "--json"]).stdout)
    assert card["file"] == tiny_detector.name and info["file"] == str(tiny_detector)
    assert {k: v for k, v in card.items() if k in info and k != "file"} == {
        k: v for k, v in info.items() if k != "file"
    }


def test_openapi_schema(make_client: Callable[..., TestClient], scanner: Scanner) -> None:
    """The schema says what the server does: no key scheme without a key, every error status listed."""
    for key in (None, "k" * 12):
        client = make_client(api_key=key)
        spec = client.get("/openapi.json").json()
        assert {"/v1/scan", "/v1/explain", "/v1/explain/{png_id}.png", "/v1/model", "/healthz"} <= set(
            spec["paths"]
        )
        scan = spec["paths"]["/v1/scan"]["post"]
        body = scan["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert body["properties"]["files"]["type"] == "array"
        assert body["properties"]["files"]["minItems"] == 1 and body["properties"]["files"]["maxItems"] == 64
        assert "zip_password" in body["properties"]
        assert {"400", "413", "422", "503", "504"} <= set(scan["responses"])
        if key is None:
            assert "securitySchemes" not in spec.get("components", {}) and "security" not in scan
        else:
            assert "APIKeyHeader" in spec["components"]["securitySchemes"] and scan["security"]
        explain = spec["paths"]["/v1/explain"]["post"]
        params = {p["name"]: p["schema"] for p in explain["parameters"]}
        assert params["target"]["enum"] == scanner.classes
        assert "gradcam" in params["method"]["enum"]  # a CNN: Grad-CAM applies
        assert "404" in explain["responses"]
    # one record per file, with the fields of malvision.scan.Verdict (as `malvision scan --json` prints)
    ok = scan["responses"]["200"]["content"]["application/json"]["schema"]
    record = spec["components"]["schemas"][ok["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(record["properties"]) == set(FIELDS) | {"upload", "entry"}
    assert client.get("/docs").status_code == 200


def _sample_zip(password: bytes = b"infected") -> bytes:
    import io
    import zipfile

    import pyzipper

    buf = io.BytesIO()
    with pyzipper.AESZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password)
        zf.writestr("FamA/one.exe", PE)
        zf.writestr("FamA/notes.txt", TEXT)
        zf.writestr("FamA/empty", b"")
        zf.writestr("../evil.exe", PE)
    return buf.getvalue()


def test_scan_opens_sample_zips_in_memory_with_their_password(client: TestClient, scanner: Scanner) -> None:
    z = _sample_zip()
    records = client.post("/v1/scan", files={"files": ("s.zip", z)}, data={"zip_password": "infected"}).json()
    by_path = {r["path"]: r for r in records}
    one = scanner.scan_bytes("s.zip!FamA/one.exe", PE).to_dict()
    assert by_path["s.zip!FamA/one.exe"] == one | {"upload": 0, "entry": "FamA/one.exe"}
    assert by_path["s.zip!FamA/notes.txt"]["verdict"] == "unknown"
    assert (by_path["s.zip!FamA/empty"]["verdict"], by_path["s.zip!FamA/empty"]["reason"]) == (
        "unknown",
        "empty file",
    )
    assert "unsafe entry name" in next(r["error"] for r in records if "evil" in r["path"])
    # Without a password the zip is a file like any other; with a wrong one, one error record.
    (plain,) = client.post("/v1/scan", files={"files": ("s.zip", z)}).json()
    assert plain["path"] == "s.zip" and plain["verdict"] == "unknown"
    (wrong,) = client.post("/v1/scan", files={"files": ("s.zip", z)}, data={"zip_password": "nope"}).json()
    assert "wrong zip password" in wrong["error"]


def test_a_program_with_a_zip_appended_is_scanned_as_the_program(
    client: TestClient, scanner: Scanner
) -> None:
    """A self-extractor (or a program holding a stray end-of-zip record) is no sample zip: its own bytes
    are scored, not only the entries behind it."""
    sfx = PE + _sample_zip()
    (record,) = client.post(
        "/v1/scan", files={"files": ("sfx.exe", sfx)}, data={"zip_password": "infected"}
    ).json()
    assert record == scanner.scan_bytes("sfx.exe", sfx).to_dict() | {"upload": 0}
    assert record["verdict"] != "unknown"


def test_explain_reads_one_entry_of_an_uploaded_zip(client: TestClient) -> None:
    z = _sample_zip()
    form = {"zip_password": "infected", "entry": "FamA/one.exe"}
    resp = client.post("/v1/explain", files={"file": ("s.zip", z)}, data=form)
    assert resp.status_code == 200, resp.text
    record = resp.json()
    assert record["path"] == "s.zip!FamA/one.exe" and record["explained"] is True
    assert record["size"] == len(PE) and client.get(record["png"]).content[:4] == b"\x89PNG"
    missing = client.post("/v1/explain", files={"file": ("s.zip", z)}, data=form | {"entry": "x"})
    assert "no entry" in _error(missing, 404)
    assert "not a zip" in _error(client.post("/v1/explain", files={"file": ("a.exe", PE)}, data=form), 404)
    wrong = client.post("/v1/explain", files={"file": ("s.zip", z)}, data=form | {"zip_password": "nope"})
    assert "wrong zip password" in _error(wrong, 422)


def test_records_carry_the_cards_bands(tmp_path: Path, tiny_detector: Path) -> None:
    """With a card's 1% and 0.1% FPR points, every record says its band and its threshold."""
    from malvision.card import save_with_card
    from malvision.checkpoint import load_checkpoint
    from malvision.scan import band_of

    points = {"0.01": {"threshold": 0.2}, "0.001": {"threshold": 0.6}}
    card = {"threshold": 0.5, "metrics": {"operating_points": points}}
    scanner = Scanner(
        save_with_card(load_checkpoint(tiny_detector), tmp_path / "carded.pt", card), backend="torch"
    )
    assert scanner.bands == (0.2, 0.6) and scanner.threshold == 0.5
    with TestClient(create_app(scanner)) as c:
        (r,) = c.post("/v1/scan", files={"files": ("a.exe", PE)}).json()
        assert r["threshold"] == 0.5 and r["band"] == band_of(r["score"], (0.2, 0.6))
        assert c.get("/v1/model").json()["bands"]["points"] == {"0.01": 0.2, "0.001": 0.6}
    bands = [band_of(x, (0.2, 0.6)) for x in (0.1, 0.2, 0.59, 0.6, 0.99)]
    assert bands == ["clean", "suspicious", "suspicious", "malicious", "malicious"]
    assert band_of(0.9, None) is None


def test_explain_endpoint_and_bounded_png_store(make_client: Callable[..., TestClient]) -> None:
    c = make_client(png_store=2)
    links = []
    for i in range(3):
        resp = c.post("/v1/explain?top_k=3", files={"file": (f"s{i}.exe", PE)})
        assert resp.status_code == 200, resp.text
        record = resp.json()
        assert record["path"] == f"s{i}.exe" and record["verdict"] in ("benign", "malware")
        assert 1 <= len(record["ranges"]) <= 3 and record["ranges"][0]["sections"]
        assert [s["name"] for s in record["sections"]] == ["headers", ".text"]
        assert re.fullmatch(r"/v1/explain/[A-Za-z0-9_-]{24}\.png", record["png"])
        links.append(record["png"])
    png = c.get(links[-1])
    assert (
        png.status_code == 200
        and png.headers["content-type"] == "image/png"
        and png.content[:4] == b"\x89PNG"
    )
    _error(c.get(links[0]), 404)  # only the last two are kept
    _error(c.get("/v1/explain/not-an-id.png"), 404)


def test_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), refs
    for name in ("app.js", "style.css"):
        text = (STATIC / name).read_text()
        assert "http://" not in text and "https://" not in text and "innerHTML" not in text
        assert client.get(f"/static/{name}").status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_come_from_the_server_itself(client: TestClient, page: str) -> None:
    """An offline lab still gets its API docs: no script, style or font from a CDN, and a CSP that forbids one."""
    answer = client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    refs = re.findall(r'(?:src|href)="([^"]+)"', answer.text) + re.findall(r"url: '([^']+)'", answer.text)
    assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), refs
    for ref in refs:
        assert client.get(ref).status_code == 200, ref
    assert client.get(page + "x").headers["content-security-policy"] == CSP  # only the pages themselves


# -- a real server: the limit holds while the body is still coming -----------------------------------------------
@contextlib.contextmanager
def live(app: Any) -> Iterator[int]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait_for(lambda: server.started, 10)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _raw(port: int, head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    """Send ``head`` then chunks until the server answers; the whole answer (the body is never finished)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        answer = b""
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break
            s.settimeout(0.05)
            with contextlib.suppress(TimeoutError):
                if answer := s.recv(65536):
                    break
        s.settimeout(1)
        with contextlib.suppress(OSError):  # the rest of the answer, until the server closes
            while data := s.recv(65536):
                answer += data
        return answer


@pytest.mark.slow
def test_limit_enforced_while_streaming(scanner: Scanner) -> None:
    app = create_app(scanner, ServerSettings(max_upload=8192))
    with live(app) as port:
        # A declared Content-Length of 10 GB: refused before any body byte is read.
        head = (
            b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        answer = _raw(port, head, iter([b"--b\r\n"]))
        assert answer.startswith(b"HTTP/1.1 413") and b'"error"' in answer
        # Chunked, no length: refused once the count passes the limit, the body never finished.
        head = (
            b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\n'
        sent = []

        def chunks() -> Iterator[bytes]:
            yield b"%x\r\n%s\r\n" % (len(part), part)
            for _ in range(10_000):  # up to 80 MB, far past the 8 KiB (+64 KiB framing) limit
                sent.append(8192)
                yield b"2000\r\n" + b"x" * 8192 + b"\r\n"

        answer = _raw(port, head, chunks())
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sum(sent) < 2 * 1024 * 1024  # answered long before the client stopped sending


def _multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "testboundary123"
    out = b""
    for field, (name, data) in files.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_serve_on_an_address_it_cannot_have_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from corpus.harness import call_main, check_run

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = call_main(["serve", "--port", str(port)], capsys)
    (line,) = check_run(run, [2], errors=1)
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port} (Address already in use"), line
    run = call_main(["serve", "--host", "nonexistent.invalid", "--api-key", "k" * 16], capsys)
    (line,) = check_run(run, [2], errors=1)
    assert line.startswith("error: cannot listen on nonexistent.invalid:8000 ("), line

"""Checkpoints: safe load only, atomic save, metadata round trip, resume, one-line errors."""

from __future__ import annotations

import pickle
import pickletools
import signal
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from malvision.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from malvision.errors import CheckpointError
from malvision.models import create_model

KWARGS = {"channels": (4, 8), "embed_dim": 4}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors run much faster on one thread than with threads contending for 2 shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(name: str = "cnn", **kwargs: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_kind="opcodes", n_classes=3, vocab_size=20, **(kwargs or KWARGS))


def _save(path: Path, model: torch.nn.Module | None = None, **over: Any) -> Path:
    args: dict[str, Any] = {
        "model_name": "cnn",
        "model_kwargs": KWARGS,
        "in_kind": "opcodes",
        "n_classes": 3,
        "vocab_size": 20,
        "spec": {"kind": "opcodes", "max_len": 4096, "vocab": ["mov", "push"], "version": 1},
        "classes": ["Gatak", "Ramnit", "Vundo"],
        "seed": 42,
        "manifest_hash": "ab" * 32,
    }
    args.update(over)
    return save_checkpoint(path, model if model is not None else _model(), **args)


def _one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def _rewrite(path: Path, change) -> None:
    """Load our own (safe) checkpoint, change the payload, save it back."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


class _Evil:
    """Pickles to ``open(marker, "w")``: unpickling it unsafely creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_round_trip_keeps_metadata_and_weights(tmp_path: Path) -> None:
    model = _model().eval()
    x = torch.randint(0, 20, (2, 50))
    path = _save(tmp_path / "sub" / "m.pt", model, metrics={"acc": np.float32(0.5), "n": np.int64(3)})
    ck = load_checkpoint(path)
    assert ck.path == path and ck.model_name == "cnn" and ck.in_kind == "opcodes"
    assert ck.n_classes == 3 and ck.vocab_size == 20 and ck.seed == 42
    assert ck.classes == ["Gatak", "Ramnit", "Vundo"] and ck.manifest_hash == "ab" * 32
    assert ck.metrics == {"acc": 0.5, "n": 3}
    assert ck.format_version == FORMAT_VERSION and ck.info["torch"] == torch.__version__
    assert list(ck.model_kwargs["channels"]) == [4, 8]
    assert ck.convert_spec().vocab == ("mov", "push")
    assert ck.epoch is None and ck.optimizer_state is None
    with torch.no_grad():
        assert torch.equal(ck.model(x), model(x))
    assert not ck.model.training
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary files left


def test_file_holds_only_plain_types(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.pt", extra={"note": "hi", "path": tmp_path, "arr": np.arange(3)})
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        data = z.read(pkl)
    used = {str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert used, "expected tensor rebuild functions"
    allowed = {
        "torch._utils _rebuild_tensor_v2",
        "torch FloatStorage",
        "torch LongStorage",
        "collections OrderedDict",
    }
    assert used <= allowed, used - allowed
    ck = load_checkpoint(path)
    assert ck.extra == {"note": "hi", "path": str(tmp_path), "arr": [0, 1, 2]}


def test_resume_state_round_trip(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = torch.randint(0, 20, (4, 40)), torch.tensor([0, 1, 2, 0])
    for _ in range(2):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
    path = _save(tmp_path / "last.pt", model, optimizer=opt, scheduler=sched, epoch=4)
    ck = load_checkpoint(path)
    assert ck.epoch == 4
    opt2 = torch.optim.AdamW(ck.model.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    assert ck.restore_training(opt2, sched2) == 5
    assert sched2.get_last_lr() == sched.get_last_lr()
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert torch.equal(s1[0]["exp_avg"], s2[0]["exp_avg"])
    with pytest.raises(CheckpointError, match="no training state"):
        load_checkpoint(_save(tmp_path / "plain.pt")).restore_training(opt2)
    with pytest.raises(CheckpointError, match="optimizer state does not fit"):
        ck.restore_training(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]))


def test_unsafe_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # the payload is live: plain pickle would run it
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control))).close()
    assert control.exists()

    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"format": "malvision-checkpoint", "x": _Evil(marker)}))
    torch_zip = tmp_path / "zip.pt"
    torch.save({"format": "malvision-checkpoint", "state_dict": _Evil(marker)}, torch_zip)
    for path in (raw, torch_zip):
        msg = _one_line_error(path)
        assert "refused" in msg or "not a malvision checkpoint" in msg
        assert not marker.exists()
    assert "refused" in _one_line_error(torch_zip)


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.pt")
    data = good.read_bytes()
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert "truncated" in _one_line_error(truncated)
    random_bytes = tmp_path / "random.bin"
    random_bytes.write_bytes(bytes(range(256)) * 4)
    assert "not a malvision checkpoint" in _one_line_error(random_bytes)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint\n")
    _one_line_error(text)
    zipped = tmp_path / "other.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("a.txt", "hi")
    _one_line_error(zipped)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    assert "not a malvision checkpoint" in _one_line_error(plain)
    assert "no such file" in _one_line_error(tmp_path / "missing.pt")
    assert "directory" in _one_line_error(tmp_path)


def test_unknown_version_and_missing_keys(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.pt")
    _rewrite(path, lambda p: p.update(format_version=99))
    assert "format version 99 is not supported" in _one_line_error(path)

    path = _save(tmp_path / "m2.pt")
    _rewrite(path, lambda p: p.pop("classes"))
    assert "missing classes" in _one_line_error(path)

    path = _save(tmp_path / "m3.pt")
    _rewrite(path, lambda p: p["model"].pop("kwargs"))
    assert "missing kwargs" in _one_line_error(path)


def test_other_architecture_or_damaged_weights(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.pt")
    _rewrite(path, lambda p: p["model"].update(name="crnn"))  # same kwargs, other weights
    msg = _one_line_error(path)
    assert "do not fit model 'crnn'" in msg and "missing" in msg and "another architecture" in msg

    path = _save(tmp_path / "a2.pt")
    _rewrite(path, lambda p: p["model"].update(name="resnet"))
    assert "cannot rebuild the model" in _one_line_error(path)

    path = _save(tmp_path / "b.pt")
    _rewrite(path, lambda p: p["state_dict"].pop("fc.weight"))
    assert "missing: fc.weight" in _one_line_error(path)

    path = _save(tmp_path / "c.pt")
    _rewrite(path, lambda p: p["state_dict"].update({"fc.weight": torch.zeros(7, 7)}))
    assert "shape: fc.weight" in _one_line_error(path)

    path = _save(tmp_path / "d.pt")
    _rewrite(path, lambda p: p["model"].update(name="vgg"))
    assert "unknown model 'vgg'" in _one_line_error(path)

    path = _save(tmp_path / "e.pt")
    _rewrite(path, lambda p: p["state_dict"]["fc.bias"].fill_(float("nan")))
    assert "NaN" in _one_line_error(path)


def test_save_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not match 'cnn'"):
        _save(tmp_path / "m.pt", model_kwargs={"channels": (4, 16), "embed_dim": 4})
    with pytest.raises(CheckpointError, match="2 class names for a model with 3 outputs"):
        _save(tmp_path / "m.pt", classes=["a", "b"])
    with pytest.raises(CheckpointError, match=r"extra\['f'\].*not a tensor or plain value"):
        _save(tmp_path / "m.pt", extra={"f": lambda: 1})
    with pytest.raises(CheckpointError, match="unknown model"):
        _save(tmp_path / "m.pt", model_name="vgg")
    assert not (tmp_path / "m.pt").exists()


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "m.pt")
    before = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        _save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_save_waits_for_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    """Ctrl-C (or SIGTERM) in the middle of torch.save: the checkpoint is finished and renamed, then the
    interrupt arrives as the handler in place makes it (here KeyboardInterrupt), not as a zip error."""
    real_save = torch.save

    def save_with_a_signal_inside(obj: Any, f: Any) -> None:
        f.write(b"")  # the writer is open: the signal lands mid-file
        signal.raise_signal(sig)
        real_save(obj, f)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)  # what `malvision` installs
    try:
        monkeypatch.setattr(torch, "save", save_with_a_signal_inside)
        with pytest.raises(KeyboardInterrupt):
            _save(tmp_path / "m.pt")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert load_checkpoint(tmp_path / "m.pt").model_name == "cnn"  # whole
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_a_model_of_the_older_feature_list_loads_and_reads_its_start(tmp_path: Path) -> None:
    """A features 3 checkpoint saved before version 4 (no ``n_features`` in its kwargs, which then meant
    the shorter list) rebuilds at its own width and scores the start of today's vector."""
    from corpus import minimal_pe
    from malvision.convert.pefeatures import FEATURE_WIDTHS
    from malvision.scan import Scanner

    torch.manual_seed(0)
    model = create_model("mlp", in_kind="features", n_classes=2, n_features=FEATURE_WIDTHS[3], hidden=(4,))
    spec = {"kind": "features", "image_size": 64, "max_len": 2097152, "vocab": [], "version": 3}
    path = _save(tmp_path / "old.pt", model, model_name="mlp", model_kwargs={"n_features": FEATURE_WIDTHS[3],
                 "hidden": (4,)}, in_kind="features", n_classes=2, vocab_size=None, spec=spec,
                 classes=["benign", "malware"])  # fmt: skip
    _rewrite(path, lambda p: p["model"]["kwargs"].pop("n_features"))
    ck = load_checkpoint(path)
    assert ck.model.n_features == FEATURE_WIDTHS[3] and ck.convert_spec().n_features == FEATURE_WIDTHS[3]
    (tmp_path / "a.exe").write_bytes(minimal_pe())
    (verdict,) = Scanner(path).scan([str(tmp_path / "a.exe")])
    assert verdict.score is not None and 0 <= verdict.score <= 1

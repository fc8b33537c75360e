"""MalConv: the chunked (low-memory) path gives the same logits and gradients as one plain pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from malvision.models import create_model


def _model(**kwargs):
    torch.manual_seed(0)
    return create_model("malconv", in_kind="bytes", n_classes=2, **kwargs)


def _input() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(1, 257, (3, 4700), generator=g)  # 9 windows of 512 + a partial one
    x[1, 3000:] = 0
    x[2, 700:] = 0
    return x


def test_default_is_the_published_malconv() -> None:
    m = _model()
    assert m.embedding.embedding_dim == 8
    assert m.conv.kernel_size == (512,) and m.conv.stride == (512,) and m.conv.out_channels == 128
    assert m.gate.kernel_size == (512,) and m.gate.out_channels == 128


@pytest.mark.parametrize("window_stride", [(512, 512), (64, 32)])
def test_chunked_equals_unchunked(window_stride: tuple[int, int]) -> None:
    window, stride = window_stride
    m = _model(window=window, stride=stride, chunk_size=1024)
    x = _input()
    assert m._positions_per_chunk() * 3 < x.shape[1] // stride  # several chunks really are used
    m.eval()
    with torch.no_grad():
        chunked = m(x)
        m.chunk_size = 10**9
        whole = m(x)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)

    grads = []
    for chunk_size in (1024, 10**9):  # with gradients the winners are recomputed
        m.chunk_size = chunk_size
        m.zero_grad()
        out = m(x)
        torch.testing.assert_close(out, whole, rtol=1e-5, atol=1e-6)
        F.cross_entropy(out, torch.tensor([0, 1, 1])).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_embedded_seam_matches() -> None:
    m = _model(chunk_size=1024).eval()
    x = _input()
    e = m.embed(x).detach().requires_grad_(True)
    out = m.forward_embedded(e, m.padding_mask(x))
    torch.testing.assert_close(out, m(x), rtol=1e-5, atol=1e-6)
    out[:, 1].sum().backward()
    assert e.grad is not None
    # only the winning windows get gradient: sparse, and none on padding
    assert 0 < (e.grad.abs().sum(-1) > 0).float().mean() < 1
    assert (e.grad[2, 1024:] == 0).all()


def test_padding_and_short_inputs() -> None:
    m = _model().eval()
    x = torch.randint(1, 257, (1, 100))  # shorter than one window
    with torch.no_grad():
        a = m(x)
        b = m(F.pad(x, (0, 5000)))
    torch.testing.assert_close(a, b)


def test_opcodes_input() -> None:
    m = create_model("malconv", in_kind="opcodes", vocab_size=40, n_classes=9, window=16, stride=16)
    assert m(torch.randint(0, 40, (2, 300))).shape == (2, 9)

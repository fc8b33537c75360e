"""Recurrent models: forward_sequence states and their gradients, exactness under padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from malvision.models import create_model
from malvision.models.rnn import RecurrentLayers


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forward_sequence_state_gradients(cell: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    m = create_model(
        cell, in_kind="bytes", n_classes=2, embed_dim=4, hidden=6, pool="last", bidirectional=bidirectional
    ).eval()
    x = torch.randint(1, 257, (3, 30))
    x[1, 20:] = 0
    x[2, 9:] = 0
    logits, states = m.forward_sequence(x)
    assert states.shape == (3, 30, 6 * (2 if bidirectional else 1))
    with torch.no_grad():
        torch.testing.assert_close(m(x), logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m.sequence_states(m.embed(x), m.padding_mask(x))[0], states)
    states.retain_grad()
    F.cross_entropy(logits, torch.tensor([0, 1, 0])).backward()
    g = states.grad
    assert g is not None and torch.isfinite(g).all()
    fwd = g[..., :6].norm(dim=-1)  # dL/dh_t of the forward direction, per step
    assert (fwd[1, 20:] == 0).all() and (fwd[2, 9:] == 0).all()  # padding took no part
    assert (fwd[0] > 0).all() and (fwd[1, :20] > 0).all() and (fwd[2, :9] > 0).all()  # through time
    if bidirectional:
        back = g[..., 6:].norm(dim=-1)
        assert (back[0] > 0).all() and (back[2, 9:] == 0).all()


def test_state_gradients_equal_a_hand_unrolled_rnn() -> None:
    """states.grad[:, t] is the total dL/dh_t, as from an RNNCell unrolled by hand."""
    torch.manual_seed(0)
    m = create_model("rnn", in_kind="opcodes", vocab_size=9, n_classes=2, embed_dim=3, hidden=5, pool="last")
    m.eval()
    x = torch.randint(1, 9, (2, 12))
    logits, states = m.forward_sequence(x)
    logits[:, 1].sum().backward()
    assert states.grad is not None

    rnn = m.rnn.fwd[0]
    cell = nn.RNNCell(3, 5)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(rnn, f"{name}_l0"))
    e = m.embed(x).detach()
    h = torch.zeros(2, 5)
    hs = []
    for t in range(12):
        h = cell(e[:, t], h)
        h.retain_grad()
        hs.append(h)
    m.fc(h)[:, 1].sum().backward()
    expected = torch.stack([hh.grad for hh in hs], dim=1)
    torch.testing.assert_close(states.grad, expected, rtol=1e-4, atol=1e-6)
    norms = expected.norm(dim=-1)
    assert norms[:, 0].sum() < norms[:, -1].sum()  # the gradient fades going back in time


def test_image_rows_are_time_steps() -> None:
    m = create_model("gru", in_kind="image", n_classes=2, embed_dim=4, hidden=5, row_features=8)
    _, states = m.forward_sequence(torch.rand(2, 1, 24, 24))
    assert states.shape == (2, 24, 5)


def test_crnn_shortens_the_sequence() -> None:
    m = create_model("crnn", in_kind="opcodes", vocab_size=10, n_classes=2, channels=(4, 4, 4), hidden=3)
    logits, states = m.forward_sequence(torch.randint(1, 10, (2, 100)))
    assert states.shape == (2, 13, 3)  # ceil(100 / 8)
    logits.sum().backward()
    assert states.grad is not None and (states.grad.norm(dim=-1) > 0).sum() > 4
    m16 = create_model("crnn", in_kind="bytes", n_classes=2, channels=(4, 4, 4, 4), hidden=3)
    assert m16.forward_sequence(torch.randint(1, 257, (1, 160)))[1].shape[1] == 10
    mi = create_model("crnn", in_kind="image", n_classes=2, channels=(4, 4, 4), hidden=3)
    assert mi.forward_sequence(torch.rand(1, 1, 64, 64))[1].shape == (1, 8, 3)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bidirectional_matches_packed_torch_rnn(cell: str) -> None:
    """Our gather-reversal equals PyTorch's packed bidirectional RNN on padded batches."""
    torch.manual_seed(1)
    ours = RecurrentLayers(cell, 5, 4, layers=2, bidirectional=True, dropout=0.0)
    ref = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](5, 4, 2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for layer in range(2):
            for direction, mods in (("", ours.fwd), ("_reverse", ours.bwd)):
                assert mods is not None
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(ref, f"{kind}_l{layer}{direction}").copy_(getattr(mods[layer], f"{kind}_l0"))
    x = torch.randn(3, 11, 5)
    lengths = torch.tensor([11, 7, 2])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=11)
    got = ours(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(got[i, :n], expected[i, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool", ["last", "max", "mean"])
def test_pools_ignore_padding(pool: str) -> None:
    torch.manual_seed(0)
    kwargs = {"hidden": 5, "layers": 2, "bidirectional": True, "pool": pool}
    m = create_model("lstm", in_kind="opcodes", vocab_size=12, n_classes=3, **kwargs).eval()
    x = torch.randint(1, 12, (2, 15))
    x[1, 6:] = 0
    with torch.no_grad():
        both = m(F.pad(x, (0, 9)))
        alone = m(x[1:, :6])
    torch.testing.assert_close(both[1], alone[0], rtol=1e-5, atol=1e-6)

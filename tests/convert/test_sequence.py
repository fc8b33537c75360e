"""Byte sequences, padding and the opcode vocabulary (malvision.convert.sequence)."""

from __future__ import annotations

import numpy as np
import pytest

from malvision.convert.sequence import PAD, UNK, Vocabulary, byte_sequence, pad_batch
from malvision.errors import ConversionError


def test_byte_sequence_shifts_every_byte_by_one() -> None:
    seq = byte_sequence(bytes(range(256)))
    assert seq.dtype == np.uint16
    assert seq[0] == 1 and seq[255] == 256
    assert np.array_equal(seq, np.arange(1, 257))
    assert PAD not in seq


def test_byte_sequence_is_the_same_for_every_buffer_type(rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
    ref = byte_sequence(data)
    for buf in (
        memoryview(data),
        np.frombuffer(data, np.uint8),
        np.frombuffer(data, np.uint8).reshape(10, 100),
    ):
        assert np.array_equal(byte_sequence(buf), ref)


@pytest.mark.parametrize(("size", "max_len", "expected"), [(100, 10, 10), (100, 100, 100), (100, 1000, 100)])
def test_byte_sequence_truncates_at_max_len(size: int, max_len: int, expected: int) -> None:
    data = bytes(i % 256 for i in range(size))
    seq = byte_sequence(data, max_len)
    assert len(seq) == expected
    assert np.array_equal(seq, np.frombuffer(data[:expected], np.uint8) + 1)


def test_byte_sequence_refuses_bad_input() -> None:
    with pytest.raises(ConversionError, match="positive"):
        byte_sequence(b"abc", 0)
    with pytest.raises(ConversionError, match="no bytes"):
        byte_sequence(b"")
    with pytest.raises(ConversionError, match="uint8"):
        byte_sequence(np.zeros(4, dtype=np.int32))


def test_pad_batch_pads_to_the_longest_with_zero() -> None:
    seqs = [byte_sequence(b"\x00\xff\x10"), byte_sequence(b"\x00"), byte_sequence(b"\xff" * 5)]
    batch = pad_batch(seqs)
    assert batch.shape == (3, 5)
    assert batch.dtype == np.int64
    assert batch[0].tolist() == [1, 256, 17, 0, 0]
    assert batch[1].tolist() == [1, 0, 0, 0, 0]
    assert batch[2].tolist() == [256] * 5


def test_pad_never_collides_with_a_byte() -> None:
    batch = pad_batch([byte_sequence(bytes(range(256))), byte_sequence(b"\x00")])
    real = batch[0]
    assert (real != PAD).all()  # byte 0 became 1
    assert (batch[1, 1:] == PAD).all()


def test_pad_batch_to_a_fixed_length_truncates_and_pads() -> None:
    batch = pad_batch([np.arange(1, 11), np.arange(1, 3)], length=4)
    assert batch.tolist() == [[1, 2, 3, 4], [1, 2, 0, 0]]


def test_pad_batch_of_nothing_or_to_a_negative_length_is_an_error() -> None:
    with pytest.raises(ConversionError):
        pad_batch([])
    with pytest.raises(ConversionError, match="at least 0, got -1"):
        pad_batch([np.arange(1, 4)], -1)


def test_vocabulary_reserves_pad_and_unknown() -> None:
    vocab = Vocabulary(["mov", "push"])
    assert (PAD, UNK) == (0, 1)
    assert len(vocab) == 4
    assert vocab.encode(["mov", "push", "xyzzy"]).tolist() == [2, 3, UNK]
    assert vocab.encode([]).size == 0


def test_vocabulary_build_is_deterministic_by_count_then_name() -> None:
    docs = [["push", "mov", "mov", "call"], ["mov", "call", "xor"], ["push"]]
    vocab = Vocabulary.build(docs)
    assert vocab.to_list() == ["mov", "call", "push", "xor"]  # 3, 2, 2 (c < p), 1
    assert Vocabulary.build(reversed(docs)).to_list() == vocab.to_list()
    assert Vocabulary.build(docs, min_count=2).to_list() == ["mov", "call", "push"]
    assert Vocabulary.build(docs, max_size=2).to_list() == ["mov", "call"]


def test_vocabulary_encode_cuts_at_max_len_and_round_trips() -> None:
    vocab = Vocabulary.build([["a", "b", "c"]])
    ids = vocab.encode(["c", "b", "a", "z"], max_len=3)
    assert ids.tolist() == [4, 3, 2]
    assert ids.dtype == np.uint16
    assert Vocabulary(vocab.to_list()).index == vocab.index


def test_vocabulary_with_duplicates_is_an_error() -> None:
    with pytest.raises(ConversionError, match="duplicate"):
        Vocabulary(["mov", "mov"])


def test_large_vocabulary_switches_to_int32() -> None:
    vocab = Vocabulary([f"t{i}" for i in range(70_000)])
    ids = vocab.encode(["t69999", "nope"])
    assert ids.dtype == np.int32
    assert ids.tolist() == [70_001, UNK]

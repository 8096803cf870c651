"""The on-disk text-embedding cache, driven by a tiny deterministic encoder that records its calls."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from t2vkit.interfaces import TextEmbedding, TextEncoder
from t2vkit.text_cache import cache_folder, embed_texts

DIM = 4
PAD = 7.0  # what the fake encoder leaves at padded positions: the cache must not keep it


def word_vector(word: str, salt: str) -> torch.Tensor:
    digest = hashlib.sha256(f"{salt}:{word}".encode()).digest()
    return torch.tensor(list(digest[:DIM]), dtype=torch.float32) / 255


class CountingEncoder(TextEncoder):
    """One token per word plus a start token; pooled = their sum. ``calls`` lists every batch sent."""

    def __init__(self, identity: str = "counting/v1: test") -> None:
        self._identity = identity
        self.dim = DIM
        self.max_length = 64
        self.calls: list[list[str]] = []

    @property
    def identity(self) -> str:
        return self._identity

    def encode(self, texts: Sequence[str]) -> TextEmbedding:
        self.calls.append(list(texts))
        words = [["<s>", *text.split()] for text in texts]
        width = max(map(len, words), default=0)
        tokens = torch.full((len(texts), width, DIM), PAD)
        mask = torch.zeros(len(texts), width, dtype=torch.bool)
        for i, row in enumerate(words):
            for j, word in enumerate(row):
                tokens[i, j] = word_vector(word, self._identity)
                mask[i, j] = True
        pooled = (tokens * mask[..., None]).sum(1)
        return TextEmbedding(pooled=pooled, tokens=tokens, mask=mask)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test's own (conftest's shared one would leak entries between tests)."""
    monkeypatch.setenv("T2VKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


TEXTS = ["a cat sits", "", "Straße über 猫", "line\nbreak and tab\t", "a dog runs after the cat"]


def expected_pooled(encoder: CountingEncoder, texts: list[str]) -> torch.Tensor:
    return torch.stack([CountingEncoder(encoder.identity).encode([t]).pooled[0] for t in texts])


def test_second_call_encodes_nothing_and_returns_the_same_values(cache_dir: Path) -> None:
    encoder = CountingEncoder()
    first = embed_texts(encoder, TEXTS)
    second = embed_texts(encoder, TEXTS)
    assert encoder.calls == [TEXTS]
    assert torch.equal(first.pooled, second.pooled)
    assert torch.equal(second.pooled, expected_pooled(encoder, TEXTS))
    assert second.tokens.shape == (len(TEXTS), 0, DIM) and second.mask.shape == (len(TEXTS), 0)
    folder = cache_folder(encoder)
    assert folder.parent == cache_dir / "text" and "/" not in folder.name and ":" not in folder.name
    assert (folder / "index.json").is_file() and len(list(folder.glob("*.safetensors"))) == 1


def test_order_is_kept_and_only_new_texts_are_encoded(cache_dir: Path) -> None:
    encoder = CountingEncoder()
    embed_texts(encoder, ["b c", "a"])
    asked = ["a", "new text", "b c", "a", "new text"]
    result = embed_texts(encoder, asked)
    assert encoder.calls == [["b c", "a"], ["new text"]]  # duplicates go to the encoder once
    assert torch.equal(result.pooled, expected_pooled(encoder, asked))
    embed_texts(encoder, asked)
    assert len(encoder.calls) == 2


def test_each_identity_has_its_own_cache(cache_dir: Path) -> None:
    one, other = CountingEncoder("counting/one"), CountingEncoder("counting/other")
    a = embed_texts(one, TEXTS)
    b = embed_texts(other, TEXTS)
    assert other.calls == [TEXTS]
    assert not torch.equal(a.pooled, b.pooled)
    assert cache_folder(one) != cache_folder(other)


def test_token_states_are_trimmed_padded_and_masked(cache_dir: Path) -> None:
    encoder = CountingEncoder()
    embed_texts(encoder, TEXTS)  # pooled only: no token states on disk yet
    first = embed_texts(encoder, TEXTS, tokens=True)
    assert encoder.calls == [TEXTS, TEXTS]
    again = embed_texts(encoder, ["", "a cat sits"], tokens=True)
    assert len(encoder.calls) == 2
    direct = CountingEncoder(encoder.identity).encode(TEXTS)
    assert first.mask.dtype == torch.bool and torch.equal(first.mask, direct.mask)
    assert torch.equal(first.tokens, direct.tokens * direct.mask[..., None])  # padding is zeros, not PAD
    # Padded to the longest of the texts asked for, not of everything cached.
    assert again.tokens.shape == (2, 4, DIM)
    assert again.mask.sum(1).tolist() == [1, 4]
    assert torch.equal(again.tokens, first.tokens[[1, 0], :4])
    # The pooled-only shard was superseded and deleted; pooled-only reads still work from the new one.
    assert len(list(cache_folder(encoder).glob("*.safetensors"))) == 1
    assert torch.equal(embed_texts(encoder, TEXTS).pooled, first.pooled)
    assert len(encoder.calls) == 2


def test_a_corrupt_shard_is_rebuilt_with_a_warning(cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    encoder = CountingEncoder()
    good = embed_texts(encoder, TEXTS, tokens=True)
    (shard,) = cache_folder(encoder).glob("*.safetensors")
    shard.write_bytes(shard.read_bytes()[:40])  # truncated
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        again = embed_texts(encoder, TEXTS, tokens=True)
    assert len(encoder.calls) == 2
    assert torch.equal(again.pooled, good.pooled) and torch.equal(again.tokens, good.tokens)
    assert any("corrupt" in r.getMessage() and shard.name in r.getMessage() for r in caplog.records)
    embed_texts(encoder, TEXTS, tokens=True)
    assert len(encoder.calls) == 2


@pytest.mark.parametrize("damage", ["{not json", json.dumps({"format": "t2vkit-text-cache", "version": 1})])
def test_a_corrupt_index_is_rebuilt_with_a_warning(
    cache_dir: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    encoder = CountingEncoder()
    good = embed_texts(encoder, TEXTS)
    (cache_folder(encoder) / "index.json").write_text(damage)
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        again = embed_texts(encoder, TEXTS)
    assert torch.equal(again.pooled, good.pooled)
    assert len(encoder.calls) == 2
    assert any("index" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert len(list(cache_folder(encoder).glob("*.safetensors"))) == 1  # the unreadable one's shard is gone
    embed_texts(encoder, TEXTS)
    assert len(encoder.calls) == 2


def test_an_index_pointing_past_a_shard_is_rebuilt(cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    encoder = CountingEncoder()
    embed_texts(encoder, TEXTS)
    path = cache_folder(encoder) / "index.json"
    index = json.loads(path.read_text())
    index["texts"][TEXTS[0]][1] = 999
    path.write_text(json.dumps(index))
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        result = embed_texts(encoder, TEXTS)
    assert encoder.calls[-1] == TEXTS  # the whole shard is distrusted
    assert torch.equal(result.pooled, expected_pooled(encoder, TEXTS))
    assert any("past its rows" in r.getMessage() for r in caplog.records)


def test_without_cache_everything_is_encoded_and_nothing_written(cache_dir: Path) -> None:
    encoder = CountingEncoder()
    result = embed_texts(encoder, TEXTS, tokens=True, cache=False)
    embed_texts(encoder, TEXTS, cache=False)
    assert encoder.calls == [TEXTS, TEXTS]
    assert torch.equal(result.pooled, expected_pooled(encoder, TEXTS))
    assert not cache_dir.exists()


def test_no_texts_and_single_strings(cache_dir: Path) -> None:
    encoder = CountingEncoder()
    empty = embed_texts(encoder, [], tokens=True)
    assert empty.pooled.shape == (0, DIM) and empty.tokens.shape == (0, 0, DIM) and encoder.calls == []
    with pytest.raises(TypeError, match="list of texts"):
        embed_texts(encoder, "a cat")

"""An on-disk cache of text embeddings, so a data set's captions go through the text encoder once.

Entries are keyed by the encoder's ``identity`` (its name and weights) and the exact text. Layout::

    cache_root()/text/<identity, filesystem-safe>/
        index.json             texts → [shard, row], and what each shard holds
        <shard>.safetensors    pooled [n, d]; with token states also tokens [Σ lengths, d], lengths [n]

Each call that embeds new texts writes one new shard and then the index, both atomically, so a crash
leaves at most an unreferenced shard. A corrupt index or shard is dropped with a warning and the
texts it held are embedded again. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2vkit.checkpoint import save_tensors
from t2vkit.fsutil import atomic_write_json, cache_root
from t2vkit.interfaces import TextEmbedding, TextEncoder
from t2vkit.log import log

if TYPE_CHECKING:
    import torch

FORMAT = "t2vkit-text-cache"
VERSION = 1
INDEX = "index.json"

# One text's embedding: the pooled vector [d] and, when asked for, its real tokens' states [l, d].
Entry = tuple["torch.Tensor", "torch.Tensor | None"]


def embed_texts(
    encoder: TextEncoder, texts: Sequence[str], *, tokens: bool = False, cache: bool = True
) -> TextEmbedding:
    """Embed ``texts`` with ``encoder``, sending it only the texts the cache does not hold yet.

    Returns CPU tensors in the order of ``texts``. ``pooled`` always; token states only with
    ``tokens=True``: right-padded with zeros to the longest of ``texts``, ``mask`` True on real
    tokens. Without them ``tokens`` is ``[B, 0, d]`` and ``mask`` ``[B, 0]``.
    ``cache=False`` embeds everything and leaves the disk alone.
    """
    if isinstance(texts, str):
        raise TypeError("embed_texts() takes a list of texts, not a single string")
    texts = list(texts)
    unique = list(dict.fromkeys(texts))
    store = _Store(encoder) if cache and unique else None
    entries = store.lookup(unique, tokens) if store else {}
    missing = [text for text in unique if text not in entries]
    if missing:
        new = _split(encoder.encode(missing), missing, tokens)
        if store:
            store.add(new, tokens)
        entries.update(new)
    return _assemble([entries[text] for text in texts], encoder.dim, tokens)


def cache_folder(encoder: TextEncoder) -> Path:
    """Where ``encoder``'s embeddings are cached: a readable prefix of its identity plus a hash of it."""
    identity = encoder.identity
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", identity).strip("._")[:64]
    return cache_root() / "text" / f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _split(embedding: TextEmbedding, texts: list[str], tokens: bool) -> dict[str, Entry]:
    pooled = embedding.pooled.detach().cpu()
    states = embedding.tokens.detach().cpu() if tokens else None
    mask = embedding.mask.cpu() if tokens else None
    return {
        text: (pooled[i], states[i][mask[i]] if states is not None and mask is not None else None)
        for i, text in enumerate(texts)
    }


def _assemble(entries: list[Entry], dim: int, tokens: bool) -> TextEmbedding:
    import torch

    pooled = torch.stack([p for p, _ in entries]) if entries else torch.zeros(0, dim)
    width = max((len(s) for _, s in entries if s is not None), default=0) if tokens else 0
    states = pooled.new_zeros(len(entries), width, dim)
    mask = torch.zeros(len(entries), width, dtype=torch.bool)
    if tokens:
        for i, (_, s) in enumerate(entries):
            assert s is not None
            states[i, : len(s)] = s
            mask[i, : len(s)] = True
    return TextEmbedding(pooled=pooled, tokens=states, mask=mask)


class _CorruptShard(Exception):
    pass


def _valid_shard(info: Any) -> bool:
    """An index's shard record: ``{"count": rows, "tokens": whether it holds token states}``."""
    return isinstance(info, dict) and type(info.get("count")) is int and type(info.get("tokens")) is bool


def _valid_ref(ref: Any, shards: dict[str, Any]) -> bool:
    """An index's text record ``[shard, row]``, naming a known shard."""
    if not (isinstance(ref, list) and len(ref) == 2):
        return False
    return isinstance(ref[0], str) and ref[0] in shards and type(ref[1]) is int


class _Store:
    """One encoder's cache folder: reads the index once, looks texts up, appends shards."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.identity = encoder.identity
        self.dim = encoder.dim
        self.folder = cache_folder(encoder)
        self.index = self._read_index()

    def _empty_index(self) -> dict[str, Any]:
        header = {"format": FORMAT, "version": VERSION, "identity": self.identity, "dim": self.dim}
        return {**header, "shards": {}, "texts": {}}

    def _read_index(self) -> dict[str, Any]:
        path = self.folder / INDEX
        if not path.exists():
            return self._empty_index()
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            index = None
        expected = self._empty_index()
        if not (
            isinstance(index, dict)
            and all(index.get(key) == expected[key] for key in ("format", "version", "identity", "dim"))
            and isinstance(index.get("shards"), dict)
            and isinstance(index.get("texts"), dict)
        ):
            log.warning(f"text cache index {path} is corrupt or from another t2vkit version; rebuilding it")
            for shard in self.folder.glob("*.safetensors"):
                shard.unlink(missing_ok=True)
            return expected
        # Malformed entries are dropped: their texts are simply embedded again.
        shards = {name: info for name, info in index["shards"].items() if _valid_shard(info)}
        texts = {text: ref for text, ref in index["texts"].items() if _valid_ref(ref, shards)}
        return {**index, "shards": shards, "texts": texts}

    def lookup(self, texts: Iterable[str], tokens: bool) -> dict[str, Entry]:
        """The cached entries among ``texts`` (with token states when ``tokens``)."""
        by_shard: dict[str, list[tuple[str, int]]] = {}
        for text in texts:
            ref = self.index["texts"].get(text)
            if ref is not None and (self.index["shards"][ref[0]]["tokens"] or not tokens):
                by_shard.setdefault(ref[0], []).append((text, ref[1]))
        found: dict[str, Entry] = {}
        for shard, refs in by_shard.items():
            try:
                found.update(self._read_shard(shard, refs, tokens))
            except _CorruptShard as exc:
                path = self._shard_path(shard)
                log.warning(f"text cache shard {path} is corrupt ({exc}); embedding its texts again")
                self._forget(shard)
        return found

    def add(self, entries: dict[str, Entry], tokens: bool) -> None:
        """Store ``entries`` as a new shard and point the index at it; unused shards are deleted."""
        import torch

        name = secrets.token_hex(8)
        tensors = {"pooled": torch.stack([p for p, _ in entries.values()])}
        if tokens:
            states = [s for _, s in entries.values() if s is not None]
            tensors["tokens"] = torch.cat(states) if states else torch.zeros(0, self.dim)
            tensors["lengths"] = torch.tensor([len(s) for s in states], dtype=torch.int64)
        self.index["shards"][name] = {"count": len(entries), "tokens": tokens}
        for row, text in enumerate(entries):
            self.index["texts"][text] = [name, row]
        used = {shard for shard, _ in self.index["texts"].values()}
        stale = [shard for shard in self.index["shards"] if shard not in used]
        for shard in stale:  # every text of theirs has been stored again, with token states
            del self.index["shards"][shard]
        try:
            save_tensors(self._shard_path(name), tensors, metadata={"identity": self.identity})
            atomic_write_json(self.folder / INDEX, self.index)
        except OSError as exc:
            log.warning(f"cannot write the text cache in {self.folder} ({exc}); embeddings are not cached")
            return
        for shard in stale:
            self._shard_path(shard).unlink(missing_ok=True)

    def _shard_path(self, shard: str) -> Path:
        return self.folder / f"{shard}.safetensors"

    def _forget(self, shard: str) -> None:
        self.index["shards"].pop(shard, None)
        self.index["texts"] = {t: ref for t, ref in self.index["texts"].items() if ref[0] != shard}
        self._shard_path(shard).unlink(missing_ok=True)

    def _read_shard(self, shard: str, refs: list[tuple[str, int]], tokens: bool) -> dict[str, Entry]:
        from safetensors import SafetensorError, safe_open

        count = self.index["shards"][shard]["count"]
        try:
            with safe_open(str(self._shard_path(shard)), framework="pt") as fh:
                keys = set(fh.keys())
                needed = {"pooled", "tokens", "lengths"} if tokens else {"pooled"}
                if not needed <= keys:
                    raise _CorruptShard(f"no {', '.join(sorted(needed - keys))}")
                data = {key: fh.get_tensor(key) for key in needed}
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise _CorruptShard(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        pooled = data["pooled"]
        if tuple(pooled.shape) != (count, self.dim):
            raise _CorruptShard(f"pooled is {tuple(pooled.shape)}, the index says ({count}, {self.dim})")
        if any(not 0 <= row < count for _, row in refs):
            raise _CorruptShard("the index points past its rows")
        if not tokens:
            return {text: (pooled[row], None) for text, row in refs}
        lengths, states = data["lengths"], data["tokens"]
        if tuple(lengths.shape) != (count,) or (lengths < 0).any() or int(lengths.sum()) != states.shape[0]:
            raise _CorruptShard("token lengths do not match the token states")
        if states.ndim != 2 or states.shape[1] != self.dim:
            raise _CorruptShard(f"token states have shape {tuple(states.shape)}")
        starts = [0, *lengths.cumsum(0).tolist()]
        return {text: (pooled[row], states[starts[row] : starts[row + 1]]) for text, row in refs}

"""The built-in text encoders: minilm (against sentence-transformers itself) and clip (real CLIP
tokenizer from OpenAI's BPE file, small randomly initialised text model). Nothing touches the network."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from t2vkit import registry
from t2vkit.errors import DataError

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "a photo of a cat",
    "person 2 is walking from left to right",
    "Ein Hund läuft über die Straße — 猫が走っている",
    "",
]
CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


def test_builtin_encoders_are_registered() -> None:
    names = registry.get_registry().names("encoder")
    assert "minilm" in names and "clip" in names, (
        "the built-in encoders are not registered: the entry point `encoders = \"t2vkit.plugins.encoders\"` "
        "is missing from the installed metadata; reinstall with `pip install --no-deps -e .`"
    )
    from t2vkit.plugins.encoders.clip import CLIP
    from t2vkit.plugins.encoders.minilm import MiniLM

    assert registry.get("encoder", "minilm").factory is MiniLM
    assert registry.get("encoder", "clip").factory is CLIP


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "t2vkit" and r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- minilm


@pytest.fixture(scope="module")
def minilm(offline):
    from t2vkit.plugins.encoders.minilm import MiniLM, MiniLMConfig

    return MiniLM(MiniLMConfig())


def test_minilm_matches_sentence_transformers(minilm) -> None:
    st = pytest.importorskip("sentence_transformers")
    from t2vkit.plugins.encoders.minilm import bundled_folder

    reference = st.SentenceTransformer(str(bundled_folder()), device="cpu", local_files_only=True)
    expected = reference.encode(SENTENCES, convert_to_tensor=True).cpu()
    cosine = torch.nn.functional.cosine_similarity(minilm.encode(SENTENCES).pooled, expected)
    assert cosine.min() >= 0.9999, cosine


def test_minilm_shapes_mask_and_normalisation(minilm) -> None:
    assert (minilm.dim, minilm.max_length) == (384, 256)
    out = minilm.encode(SENTENCES)
    lengths = [len(ids) for ids in minilm.tokenizer(SENTENCES)["input_ids"]]
    assert out.pooled.shape == (4, 384)
    assert out.tokens.shape == (4, max(lengths), 384)
    assert out.mask.dtype == torch.bool and out.mask.sum(1).tolist() == lengths
    assert lengths[-1] == 2  # "" is [CLS] [SEP] and still gets a vector
    assert torch.allclose(out.pooled.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.all(out.tokens[~out.mask] == 0)
    # Pooled is the mean of the real token states, normalised.
    mean = out.tokens[0, : lengths[0]].mean(0)
    assert torch.allclose(out.pooled[0], mean / mean.norm(), atol=1e-5)


def test_minilm_is_deterministic_and_batch_independent(minilm) -> None:
    texts = [*SENTENCES, "a much longer caption about a digit moving up and down the canvas"]
    whole = minilm.encode(texts)
    assert torch.equal(whole.pooled, minilm.encode(texts).pooled)
    minilm.batch_size = 1
    try:
        one_by_one = minilm.encode(texts)
    finally:
        minilm.batch_size = 64
    assert torch.allclose(whole.pooled, one_by_one.pooled, atol=1e-5)
    assert torch.allclose(whole.tokens, one_by_one.tokens, atol=1e-4)


def test_minilm_truncates_long_text_with_one_warning(minilm, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        out = minilm.encode(["word " * 300, "short", "again " * 400])
    assert out.mask.sum(1).tolist() == [256, 3, 256]
    (message,) = warnings_of(caplog)
    assert "256 tokens" in message and "2 of 3" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        minilm.encode(["short"])
    assert warnings_of(caplog) == []


def test_minilm_is_frozen_but_its_outputs_can_feed_training(minilm) -> None:
    parent = torch.nn.ModuleDict({"encoder": minilm, "head": torch.nn.Linear(384, 2)})
    parent.train()
    assert not minilm.training and not minilm.model.training
    assert not any(p.requires_grad for p in minilm.parameters())
    out = minilm.encode(["a cat"])
    assert not out.pooled.requires_grad
    parent["head"](out.pooled).sum().backward()  # not an inference-mode tensor
    assert parent["head"].weight.grad is not None
    assert minilm.identity.startswith("minilm-") and minilm.identity == minilm.identity
    with pytest.raises(TypeError):
        minilm.encode("a cat")


def test_minilm_refuses_a_folder_that_is_not_sentence_transformers(tmp_path: Path) -> None:
    from t2vkit.plugins.encoders.minilm import MiniLM, MiniLMConfig

    with pytest.raises(DataError, match="not found"):
        MiniLM(MiniLMConfig(path=tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"sentence_bert_config\.json"):
        MiniLM(MiniLMConfig(path=tmp_path))


# --------------------------------------------------------------------------- clip


def tiny_text_config(**overrides):
    values = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=49408,
        max_position_embeddings=77,
    )
    return transformers.CLIPTextConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def clip_vocab(clip_bpe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from t2vkit.plugins.encoders.clip import write_clip_vocab

    return write_clip_vocab(clip_bpe, tmp_path_factory.mktemp("clip-vocab"))


def save_tiny_clip(folder: Path, vocab: Path, seed: int) -> Path:
    """A save_pretrained folder: random CLIPTextModel + the real CLIP tokenizer."""
    torch.manual_seed(seed)
    transformers.CLIPTextModel(tiny_text_config()).save_pretrained(folder)
    transformers.CLIPTokenizer.from_pretrained(vocab).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_folder(clip_vocab: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), clip_vocab, seed=0)


@pytest.fixture(scope="module")
def clip(clip_folder: Path):
    return registry.create("encoder", "clip", {"path": str(clip_folder)})


def test_write_clip_vocab_rebuilds_openais_vocabulary(clip_vocab: Path) -> None:
    vocab = json.loads((clip_vocab / "vocab.json").read_text(encoding="utf-8"))
    merges = (clip_vocab / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 49408 and sorted(vocab.values()) == list(range(49408))
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["<|startoftext|>"] == 49406
    assert vocab["<|endoftext|>"] == 49407 and len(merges) == 1 + 48894
    tokenizer = transformers.CLIPTokenizer.from_pretrained(clip_vocab)
    assert tokenizer("a photo of a cat")["input_ids"] == CAT_IDS


def test_write_clip_vocab_refuses_another_file(tmp_path: Path) -> None:
    from t2vkit.plugins.encoders.clip import write_clip_vocab

    (tmp_path / "bogus.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        write_clip_vocab(tmp_path / "bogus.txt.gz", tmp_path / "out")


def test_clip_tokens_shapes_and_pooling(clip) -> None:
    assert (clip.dim, clip.max_length) == (32, 77)
    assert clip.tokenizer("a photo of a cat")["input_ids"] == CAT_IDS
    out = clip.encode(SENTENCES)
    lengths = out.mask.sum(1)
    assert lengths[0] == len(CAT_IDS) and lengths[-1] == 2  # "" is start + end of text
    assert out.pooled.shape == (4, 32) and out.tokens.shape == (4, int(lengths.max()), 32)
    assert torch.all(out.tokens[~out.mask] == 0)
    # pooler_output is the final state at the end-of-text token, the last real one.
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(out.pooled[i], out.tokens[i, n - 1], atol=1e-6)
    assert torch.equal(out.pooled, clip.encode(SENTENCES).pooled)


def test_clip_truncates_at_77_tokens_with_one_warning(clip, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="t2vkit"):
        out = clip.encode(["word " * 100, "a cat"])
    assert out.mask.sum(1).tolist() == [77, 4]
    (message,) = warnings_of(caplog)
    assert "77 tokens" in message and "1 of 2" in message


def test_clip_identity_names_the_weights(clip, clip_folder: Path, clip_vocab: Path, tmp_path: Path) -> None:
    from t2vkit.plugins.encoders.clip import CLIP, CLIPConfig

    again = CLIP(CLIPConfig(path=clip_folder))
    other = CLIP(CLIPConfig(path=save_tiny_clip(tmp_path / "other", clip_vocab, seed=1)))
    assert clip.identity.startswith("clip-")
    assert again.identity == clip.identity
    assert other.identity != clip.identity
    assert not torch.equal(other.encode(["a cat"]).pooled, clip.encode(["a cat"]).pooled)


def test_clip_loads_the_text_tower_of_a_full_clip_checkpoint(clip_vocab: Path, tmp_path: Path) -> None:
    # openai/clip-vit-base-patch32 is a CLIPModel checkpoint, not a CLIPTextModel one.
    from t2vkit.plugins.encoders.clip import CLIP, CLIPConfig

    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=16)  # fmt: skip
    config = transformers.CLIPConfig(
        text_config=tiny_text_config().to_dict(), vision_config=vision, projection_dim=16
    )
    full = transformers.CLIPModel(config).eval()
    full.save_pretrained(tmp_path)
    transformers.CLIPTokenizer.from_pretrained(clip_vocab).save_pretrained(tmp_path)
    encoder = CLIP(CLIPConfig(path=tmp_path))
    ids = torch.tensor([CAT_IDS])
    with torch.no_grad():
        expected = full.text_model(input_ids=ids).pooler_output
    assert torch.allclose(encoder.encode(["a photo of a cat"]).pooled, expected, atol=1e-5)


def test_clip_says_how_to_provide_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from t2vkit.plugins.encoders.clip import CLIP, CLIPConfig

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as caught:
        CLIP(CLIPConfig(model="t2vkit-tests/no-such-clip"))
    message = str(caught.value)
    assert "\n" not in message and "t2vkit-tests/no-such-clip" in message
    assert "--set encoder.path=DIR" in message and "download" in message and "allow_download" in message
    with pytest.raises(DataError, match="not a folder"):
        CLIP(CLIPConfig(path=tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot load CLIP text-encoder weights"):
        CLIP(CLIPConfig(path=tmp_path / "empty"))


def test_clip_refuses_folders_without_tokenizer_or_with_other_weights(clip_folder: Path, tmp_path: Path) -> None:
    from t2vkit.plugins.encoders.clip import CLIP, CLIPConfig

    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(clip_folder / name, weights_only / name)
    with pytest.raises(DataError, match="tokenizer"):
        CLIP(CLIPConfig(path=weights_only))

    bert = tmp_path / "bert"
    transformers.BertModel(
        transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    ).save_pretrained(bert)
    with pytest.raises(DataError, match="does not hold CLIP text-encoder weights"):
        CLIP(CLIPConfig(path=bert))

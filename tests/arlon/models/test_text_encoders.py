from __future__ import annotations

import dataclasses

import pytest
import torch

from arlon.config import TextEncoderConfig
from arlon.errors import ConfigError, MissingWeightsError
from arlon.models.text_encoders import (
    TEXT_ENCODERS,
    HashedWordsEncoder,
    T5TextEncoder,
    TextEncoder,
    build_text_encoder,
    check_words,
    trained_caption_source,
    trained_vocabulary,
)
from arlon.presets import tiny

WORDS = ["a", "red", "fox", "runs", "in", "the", "snow", "cat", "sleeps"]


def save_tiny_t5(directory, d_model: int = 16) -> None:
    """A 1-layer T5 encoder plus a word-level fast tokenizer, saved like a Hugging Face checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{word: i + 3 for i, word in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(directory)
    config = T5Config(
        vocab_size=len(vocab), d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    T5EncoderModel(config).save_pretrained(directory)


def test_registry_has_both_encoders():
    assert set(TEXT_ENCODERS.keys()) == {"t5", "hashed_words"}
    with pytest.raises(ConfigError, match="hashed_words"):
        TEXT_ENCODERS.get("hashed_word")


def test_hashed_words_is_deterministic_and_masks_padding():
    cfg = tiny().text
    encoder = build_text_encoder(cfg)
    assert isinstance(encoder, HashedWordsEncoder) and isinstance(encoder, TextEncoder)
    assert len(list(encoder.parameters())) == 0
    emb, mask = encoder.encode(["A red fox runs", "", "cat"])
    assert emb.shape == (3, cfg.max_length, cfg.dim) and emb.dtype == torch.float32
    assert mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [4, 0, 1]
    assert torch.all(emb[~mask] == 0)
    # A fresh encoder (fresh cache) gives bit-identical output; case does not matter.
    emb_again, _ = build_text_encoder(cfg).encode(["a RED fox runs", "", "cat"])
    assert torch.equal(emb, emb_again)
    # Same word at the same position -> same vector; other words differ.
    emb_cat, _ = encoder.encode(["cat sleeps"])
    assert torch.equal(emb_cat[0, 0], emb[2, 0])
    assert not torch.allclose(emb_cat[0, 1], emb[0, 1])
    # Word vector and position code are unit vectors.
    word = encoder.word_vector("fox")
    torch.testing.assert_close(word.norm(), torch.tensor(1.0))
    torch.testing.assert_close(emb[0, 2] - word, encoder.position_code[2])


def test_hashed_words_truncates_to_max_length():
    cfg = dataclasses.replace(tiny().text, max_length=3)
    emb, mask = build_text_encoder(cfg).encode(["one two three four five"])
    assert emb.shape == (1, 3, cfg.dim) and mask.all()


def test_t5_loads_a_tiny_saved_model_offline(tmp_path):
    save_tiny_t5(tmp_path)
    cfg = TextEncoderConfig(kind="t5", pretrained=str(tmp_path), max_length=8, dim=16)
    encoder = build_text_encoder(cfg)
    assert isinstance(encoder, T5TextEncoder)
    emb, mask = encoder.encode(["a red fox", "the cat sleeps in the snow"])
    assert emb.shape == (2, 8, 16) and emb.dtype == torch.float32
    assert mask.sum(1).tolist() == [4, 7]  # words + </s>
    assert not any(p.requires_grad for p in encoder.parameters())
    # The same as running the saved T5 ourselves.
    from transformers import T5EncoderModel

    reference = T5EncoderModel.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[3, 4, 5, 1, 0, 0, 0, 0]])
    expected = reference(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    torch.testing.assert_close(emb[:1], expected)


def test_t5_dim_mismatch_is_a_config_error(tmp_path):
    save_tiny_t5(tmp_path)
    with pytest.raises(ConfigError, match="d_model 16"):
        build_text_encoder(TextEncoderConfig(kind="t5", pretrained=str(tmp_path), max_length=8, dim=32))


@pytest.mark.parametrize("pretrained", [None, "/nonexistent/t5-dir", "not-cached-org/not-cached-t5"])
def test_t5_missing_weights_raise(pretrained):
    cfg = TextEncoderConfig(kind="t5", pretrained=pretrained)
    with pytest.raises(MissingWeightsError, match="DeepFloyd/t5-v1_1-xxl") as info:
        build_text_encoder(cfg)
    if pretrained is not None:
        assert pretrained in str(info.value)


def test_t5_empty_directory_raises_missing_weights(tmp_path):
    with pytest.raises(MissingWeightsError, match=str(tmp_path)):
        build_text_encoder(TextEncoderConfig(kind="t5", pretrained=str(tmp_path), max_length=8, dim=16))


# ---- which words a model knows ------------------------------------------------------------------


def test_the_tiny_preset_knows_the_toy_world_words_of_its_shipped_weights(tmp_path):
    from arlon.data.toyworld import CAPTION_WORDS
    from arlon.weights import bundled_checkpoint_dir

    assert trained_caption_source(bundled_checkpoint_dir("tiny")) == "toyworld"
    vocabulary = trained_vocabulary(tiny().text, "toyworld")
    assert vocabulary is not None and vocabulary.words == CAPTION_WORDS
    assert trained_vocabulary(tiny().text, "clips.csv") is None  # a CSV's words are not listed
    assert trained_vocabulary(TextEncoderConfig(kind="t5"), "toyworld") is None  # T5 reads any text
    assert trained_caption_source(tmp_path) is None  # no manifest says
    (tmp_path / "ar.json").write_text('{"data": {"clips": {"source": "/data/clips.csv"}}}')
    assert trained_caption_source(tmp_path) == "/data/clips.csv"


def test_check_words_names_unknown_and_dropped_words_and_refuses_prompts_with_nothing_to_draw():
    vocabulary = trained_vocabulary(tiny().text, "toyworld")
    known = check_words("A red circle moves from left to right on a dark background.", vocabulary, 24)
    assert (known.unknown, known.dropped, known.refused, known.warning("preset 'tiny'")) == ((), (), False, None)

    bear = check_words("a bear walks through a snowy forest", vocabulary, 24)
    assert bear.unknown == ("bear", "walks", "through", "snowy", "forest") and bear.refused  # "a" names nothing
    assert "preset 'tiny' knows no word of it that names something to draw" in bear.refusal("preset 'tiny'", vocabulary)
    assert "'a red circle moves from left to right on a dark background'" in bear.refusal("preset 'tiny'", vocabulary)

    red_bear = check_words("a red bear walks, a red bear", vocabulary, 24)
    assert red_bear.unknown == ("bear", "walks") and not red_bear.refused
    assert red_bear.warning("preset 'tiny'") == (
        "prompt 'a red bear walks, a red bear': preset 'tiny' does not know 'bear', 'walks', so the video ignores them"
    )
    long = check_words("a red circle rises " * 3 + "on a dark background", vocabulary, 8)
    assert long.dropped == ("a", "red", "circle", "rises", "on", "a", "dark", "background") and not long.unknown
    assert "drops 'a', 'red'" in long.warning("preset 'tiny'")
    # Only the words the encoder reads count: a drawable word past max_length names nothing.
    assert check_words("a bear walks through a snowy red forest", vocabulary, 4).refused

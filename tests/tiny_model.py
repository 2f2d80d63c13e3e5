"""A tiny sequence-classification model built from a transformers config, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = ["geweldig", "mooi", "leuk", "great", "love", "happy", "slecht", "vreselijk", "bang",
         "terrible", "hate", "awful", "de", "het", "is", "op", "dam", "the", "at", "weer",
         "tram", "rijdt", "niet", "feest", "#koningsdag", "!", ".", ",", "?"]


def _word_tokenizer(words: list[str]) -> tuple[dict[str, int], Any]:
    """A whitespace word-level tokenizer over ``words`` (first occurrence wins) with BERT's
    special tokens, and its vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                             *dict.fromkeys(words)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return vocab, PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]",
                                          unk_token="[UNK]", cls_token="[CLS]",
                                          sep_token="[SEP]")


def build_tiny_model(path: Path, *, seed: int = 0, labels: tuple[str, ...] = (
        "negative", "neutral", "positive")) -> Path:
    """Write a 1-layer BERT classifier + word-level tokenizer to ``path`` (save_pretrained)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    vocab, tokenizer = _word_tokenizer(WORDS)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                        num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)})
    model = BertForSequenceClassification(config)
    # make it a real (if tiny) classifier: uniform attention averages the words into the
    # [CLS] vector; positive words live on dimension 0, negative words on dimension 1
    with torch.no_grad():
        emb = model.bert.embeddings
        emb.word_embeddings.weight.zero_()
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        for word in WORDS[:6]:
            emb.word_embeddings.weight[vocab[word], 0] = 4.0
        for word in WORDS[6:12]:
            emb.word_embeddings.weight[vocab[word], 1] = 4.0
        layer = model.bert.encoder.layer[0]
        attn = layer.attention
        attn.self.query.weight.zero_()
        attn.self.key.weight.zero_()
        attn.self.value.weight.copy_(torch.eye(16))
        attn.self.value.bias.zero_()
        attn.output.dense.weight.copy_(torch.eye(16))
        attn.output.dense.bias.zero_()
        layer.output.dense.weight.zero_()
        layer.output.dense.bias.zero_()
        model.bert.pooler.dense.weight.copy_(torch.eye(16) * 3)
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        neg, pos = labels.index("negative"), labels.index("positive")
        model.classifier.weight[pos, 0] = 3.0
        model.classifier.weight[neg, 1] = 3.0
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_random_encoder(path: Path, words: list[str], *, seed: int = 0) -> Path:
    """Write a 2-layer BERT encoder with random weights (no pooler) + a word-level tokenizer
    over ``words`` to ``path``: every word gets its own vector, as in a real encoder, so the
    numeric-format tests see real activations rather than :func:`build_tiny_model`'s zeros."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    vocab, tokenizer = _word_tokenizer(words)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128,
                        max_position_embeddings=128)
    model = BertModel(config, add_pooling_layer=False)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

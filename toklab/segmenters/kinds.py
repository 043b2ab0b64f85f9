"""The built-in segmenter kinds by name, and a short example spec of each: plain data, so that
help texts (the CLI's start-up) can name them without loading the registry or any kind."""

from __future__ import annotations

ENTRY_POINT_GROUP = "toklab.segmenters"  # where plugins register more kinds
BUILTIN: dict[str, str] = {
    "bytes": "toklab.segmenters.bytes:ByteSegmenter",
    "bpe": "toklab.segmenters.bpe:BPESegmenter",
    "unigram": "toklab.segmenters.sentencepiece:UnigramSegmenter",
    "spm-bpe": "toklab.segmenters.sentencepiece:SentencePieceBPESegmenter",
    "spm": "toklab.segmenters.sentencepiece:SentencePieceFileSegmenter",
    "tiktoken": "toklab.segmenters.pretrained:TiktokenSegmenter",
    "hf": "toklab.segmenters.pretrained:HFTokenizerSegmenter",
    "entropy": "toklab.segmenters.entropy:EntropySegmenter",
    "zstd-dict": "toklab.segmenters.zstd_dict:ZstdDictSegmenter",
}
# One short spec per built-in kind, for help texts (`toklab tokenizer --help`, `toklab segmenters`).
EXAMPLES: dict[str, str] = {
    "bytes": "bytes",
    "bpe": "bpe:32k",
    "unigram": "unigram:32k",
    "spm-bpe": "spm-bpe:32k",
    "entropy": "entropy:target=4.5",
    "zstd-dict": "zstd-dict:32k",
    "tiktoken": "tiktoken:cl100k_base",
    "hf": "hf:PATH",
    "spm": "spm:PATH.model",
}


def builtin_examples() -> str:
    """'bytes, bpe:32k, ..., or a saved folder': the built-in kinds (plugins show in `toklab segmenters`)."""
    return ", ".join(EXAMPLES.get(kind, f"{kind}:...") for kind in BUILTIN) + ", or a saved folder"

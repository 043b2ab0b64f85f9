"""`bpe:<V>`: byte-level BPE trained with HF `tokenizers`, encoded through tiktoken when identical.

Training uses `tokenizers` (a regex split, then GPT-2's byte-to-unicode mapping). The trained
merges are turned into a `tiktoken.Encoding` (rank = HF id, so later merges rank lower), which
encodes the same ids several times faster. That fast path is only switched on after it has
produced exactly the ids `tokenizers` produces on a sample of the training text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from toklab.segmenters import options as opt
from toklab.segmenters.base import CUT_NEWLINE, EOT, Segmenter, check_vocab_size, cpu_count, newline_cuts, reading

# Pre-tokenisation patterns, by name. They are spelled so that Oniguruma (tokenizers) and
# fancy-regex (tiktoken) read them alike: Oniguruma takes `{1,3}+` as a repeat, not as
# possessive, so digits are written `\p{N}{1,3}` (greedy equals possessive there).
PATTERNS = {
    # GPT-4 (cl100k_base) style: case-insensitive contractions, up to 3 digits per token.
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    # GPT-4o (o200k_base) style: splits camelCase, keeps contractions on the word.
    "o200k": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    # GPT-2 style.
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
}
DEFAULT_PATTERN = "cl100k"
VERIFY_TEXTS = 400  # training documents the fast path must reproduce exactly before it is used
VERIFY_CHARS = 4 << 20  # and at most this much of their text
MAX_MIN_FREQUENCY = 2**32 - 1  # a pair count; 0 and 1 both merge any pair
MAX_TOKEN_LENGTH = 2**16  # characters
FAST = {"auto": "auto", "on": "on", "off": "off"}
OPTION_INFO = (
    opt.Option("regex", "choice", DEFAULT_PATTERN, "pre-tokenisation pattern: GPT-4, GPT-4o or GPT-2 style", choices=tuple(PATTERNS), what="bpe regex"),
    opt.Option("min_frequency", "whole", 2, "a pair seen fewer times is not merged", low=0, high=MAX_MIN_FREQUENCY),
    opt.Option("max_token_length", "whole", None, "longest token in characters (default: no limit)", low=1, high=MAX_TOKEN_LENGTH),
    opt.Option("fast", "choice", "auto", "encode through tiktoken: auto (once verified identical), on, off", choices=tuple(FAST)),
)
OPTIONS = opt.option_table(OPTION_INFO)
TRAIN_CHUNK_CHARS = 1 << 20  # a longer training text is cut into pieces of about this size, so memory stays bounded


def training_chunks(text: str, size: int | None = None) -> Iterable[str]:
    """`text` cut into pieces of at most about `size` characters (default TRAIN_CHUNK_CHARS) where
    every pattern above ends a pre-token (base.newline_cuts, the one home of that rule), so the
    words the trainer counts are exactly those of the whole text (tested against `tokenizers`' own
    pre-tokeniser). A stretch of `size` characters with no such newline is left whole, so memory is
    then bounded only by that stretch."""
    return newline_cuts(text, TRAIN_CHUNK_CHARS if size is None else size)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE vocabularies.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map, in order, to U+0100 onwards.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


def _piece_bytes(piece: str) -> bytes:
    return bytes(UNICODE_TO_BYTE[c] for c in piece)


def _hf_tokenizer(pattern: str) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(pattern), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


class BPESegmenter(Segmenter):
    kind = "bpe"
    summary = "byte-level BPE trained with tokenizers on the train split"
    option_info = OPTION_INFO
    trainable = True
    train_in_child = True  # tokenizers' trainer (Rust) never looks at Ctrl-C
    min_vocab_size = 258
    min_vocab_reason = "256 bytes, one merge, <|endoftext|>"
    cut_rule = CUT_NEWLINE  # every pattern in PATTERNS ends a pre-token at newline_cuts' cuts

    def __init__(self, tokenizer_json: str, pattern_name: str, fast: bool, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        from tokenizers import Tokenizer

        self.pattern_name = pattern_name
        self._tokenizer_json = tokenizer_json  # with <|endoftext|> added: what save() exports
        # Encode with the model alone, so a literal "<|endoftext|>" in text stays ordinary text.
        plain = json.loads(tokenizer_json)
        plain["added_tokens"] = []
        self._hf = Tokenizer.from_str(json.dumps(plain))
        vocab = self._hf.get_vocab(with_added_tokens=False)
        self._eot = len(vocab)
        self._piece_bytes = [b""] * (len(vocab) + 1)
        for piece, i in vocab.items():
            self._piece_bytes[i] = _piece_bytes(piece)
        self._encoding = self._tiktoken_encoding() if fast else None

    # tiktoken and tokenizers objects do not pickle; rebuild them from the JSON.
    def __getstate__(self) -> dict[str, Any]:
        return {"json": self._tokenizer_json, "pattern": self.pattern_name, "fast": self._encoding is not None, "params": self.params, "fp": self.corpus_fingerprint}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["json"], state["pattern"], state["fast"], state["params"])  # type: ignore[misc]
        self.corpus_fingerprint = state["fp"]

    def _tiktoken_encoding(self) -> Any:
        import tiktoken

        ranks = {piece: i for i, piece in enumerate(self._piece_bytes) if i != self._eot}
        return tiktoken.Encoding(
            f"toklab-bpe-{len(ranks)}",
            pat_str=PATTERNS[self.pattern_name],
            mergeable_ranks=ranks,
            special_tokens={EOT: self._eot},
            explicit_n_vocab=self.vocab_size,
        )

    @property
    def fast_path(self) -> bool:
        """Whether encoding goes through tiktoken (verified identical at training time)."""
        return self._encoding is not None

    @property
    def vocab_size(self) -> int:
        return len(self._piece_bytes)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {EOT: self._eot}

    def encode(self, text: str) -> list[int]:
        if self._long(text):
            return self._encode_cut(text)
        return self._encode_pieces([text])[0]

    def encode_batch(self, texts: Sequence[str], workers: int | None = None) -> list[list[int]]:
        return self._encode_batch_cut(texts, workers)

    def _encode_pieces(self, pieces: list[str], workers: int | None = None) -> list[list[int]]:
        if self._encoding is not None:
            if len(pieces) == 1:
                return [self._encoding.encode_ordinary(pieces[0])]
            return self._encoding.encode_ordinary_batch(pieces, num_threads=workers or cpu_count())
        return self._hf_encode(pieces)

    def _hf_encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self._piece_bytes[i] if i != self._eot else EOT.encode() for i in ids).decode("utf-8", errors="replace")

    def _byte_lengths(self) -> np.ndarray:
        return np.array([len(b) for b in self._piece_bytes], dtype=np.int64)

    def token_bytes(self, token_id: int) -> bytes:
        return self._piece_bytes[token_id]

    @classmethod
    def check_options(cls, options: dict[str, str]) -> dict[str, Any]:
        """Spec options -> typed trainer options, each within its bounds."""
        opt.check_unknown("bpe", options, OPTIONS)
        resolved: dict[str, Any] = {name: option.default for name, option in OPTIONS.items()}
        for key, value in options.items():
            if key == "fast":
                text = str(value).strip().lower()
                if text in FAST:
                    resolved[key] = text
                else:
                    resolved[key] = "on" if opt.boolean("bpe", key, value) else "off"
            else:
                resolved[key] = OPTIONS[key].check("bpe", value)
        return resolved

    @classmethod
    def check_spec(cls, arg: str | None, options: dict[str, str]) -> None:
        cls.check_options(options)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, **options: str) -> "BPESegmenter":
        from tokenizers import pre_tokenizers, trainers

        opts = cls.check_options(options)
        pattern_name = opts["regex"]
        opt.vocab_size_range("bpe", vocab_size, cls.min_vocab_size, cls.max_vocab_size, cls.min_vocab_reason)
        tokenizer = _hf_tokenizer(PATTERNS[pattern_name])
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - 1,  # one id is kept for <|endoftext|>
            min_frequency=opts["min_frequency"],
            max_token_length=opts["max_token_length"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        sample: list[str] = []

        sampled = [0]

        def keep_sample(stream: Iterable[str]) -> Iterable[str]:
            for text in stream:
                for chunk in training_chunks(text):  # a 50 MB document, whole, would take GBs to count and to verify
                    if len(sample) < VERIFY_TEXTS and sampled[0] < VERIFY_CHARS:
                        sample.append(chunk)
                        sampled[0] += len(chunk)
                    yield chunk

        tokenizer.train_from_iterator(keep_sample(texts), trainer=trainer)
        from tokenizers import AddedToken

        tokenizer.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
        want_fast = opts["fast"] != "off"
        segmenter = cls(tokenizer.to_str(), pattern_name, fast=want_fast, params={"regex": pattern_name})
        if want_fast and segmenter.encode_batch(sample) != segmenter._hf_encode(sample):
            segmenter._encoding = None  # tiktoken would differ: keep the slower exact path
        segmenter.params["fast"] = "on" if segmenter.fast_path else "off"
        return segmenter

    def _save_files(self, directory: Path) -> None:
        (directory / "tokenizer.json").write_text(self._tokenizer_json, encoding="utf-8")
        (directory / "bpe.json").write_text(json.dumps({"regex": self.pattern_name, "fast": self.fast_path}) + "\n")

    @classmethod
    def _load(cls, directory: Path, manifest: dict[str, Any]) -> "BPESegmenter":
        with reading(directory / "bpe.json"):
            extra = json.loads((directory / "bpe.json").read_text(encoding="utf-8"))
            pattern, fast = extra["regex"], bool(extra["fast"])
            if pattern not in PATTERNS:
                raise ValueError(f"unknown regex {pattern!r}")
        path = directory / "tokenizer.json"
        with reading(path):
            segmenter = cls(path.read_text(encoding="utf-8"), pattern, fast, manifest.get("params"))
        check_vocab_size(path, segmenter.vocab_size, manifest)
        return segmenter

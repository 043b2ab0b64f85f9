"""tokens/word counts only documents written in scripts that separate words with spaces.

Token counts come from the byte segmenter (one token per UTF-8 byte), so every expected value is
worked out by hand: a Han, kana, Thai or Hangul character is 3 bytes, an ASCII one 1 byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toklab.comparison import run_compare
from toklab.corpus.document import split_of
from toklab.gpt.flops import REFERENCE_SHAPE
from toklab.measures import TextStats, is_spaced, segmentation_row, tokens_per_word, unspaced_letters
from toklab.reports import caption, markdown, read_report, write_report

ENGLISH = "the cat sat down"  # 16 bytes, 4 words, 13 letters, all Latin: spaced
CHINESE = "我们是人"  # 4 Han: 12 bytes, 1 "word": unspaced
THAI = "สวัสดีครับ"  # 10 chars (7 letters, 3 vowel marks of category Mn) x 3 bytes = 30 bytes, 1 "word": unspaced
KOREAN = "안녕 세계"  # 4 Hangul syllables x 3 bytes + 1 space = 13 bytes, 2 words: spaced (Korean uses spaces)
MIXED = "我们今天用 GPU 训练模型"  # 9 Han (27 bytes) + GPU + 2 spaces = 32 bytes, 3 words; 9 of 12 letters Han: unspaced
HAND = {  # text: (bytes = byte-segmenter tokens, whitespace words, spaced)
    ENGLISH: (16, 4, True),
    CHINESE: (12, 1, False),
    THAI: (30, 1, False),
    KOREAN: (13, 2, True),
    MIXED: (32, 3, False),
}


def row_for(texts: list[str]) -> dict[str, float]:
    ids = [list(t.encode("utf-8")) for t in texts]
    return segmentation_row(ids, TextStats.of(texts), 257, threshold=0.3, shape=REFERENCE_SHAPE)


def test_sizes_and_spacing_by_hand():
    stats = TextStats.of(list(HAND))
    assert stats.bytes.tolist() == [b for b, _, _ in HAND.values()]
    assert stats.words.tolist() == [w for _, w, _ in HAND.values()]
    assert stats.spaced.tolist() == [s for _, _, s in HAND.values()]
    assert unspaced_letters(ENGLISH) == (0, 13)
    assert unspaced_letters(THAI) == (7, 7)
    assert unspaced_letters(KOREAN) == (0, 4)
    assert unspaced_letters(MIXED) == (9, 12)
    assert stats.spaced_bytes_share == pytest.approx((16 + 13) / 103)


def test_the_half_way_line():
    assert not is_spaced("ab 漢字")  # 2 of 4 letters Han: not fewer than half, so unspaced
    assert is_spaced("abc 漢字")  # 2 of 5
    assert not is_spaced("日本語の text")  # kana and Han, 4 of 8
    assert is_spaced("東京 is the capital of Japan")  # 2 of 21
    assert not is_spaced("ကမ္ဘာ")  # Myanmar
    assert not is_spaced("ສະບາຍດີ") and not is_spaced("សួស្តី") and not is_spaced("བཀྲ་ཤིས")  # Lao, Khmer, Tibetan
    assert not is_spaced("ｶﾀｶﾅ")  # halfwidth katakana
    assert is_spaced("Привет мир") and is_spaced("مرحبا بالعالم") and is_spaced("नमस्ते दुनिया")
    assert is_spaced("12 345 6789") and is_spaced("")  # no letter in an unspaced script: spaced


def test_tokens_per_word_by_hand():
    assert row_for(list(HAND))["tokens_per_word"] == pytest.approx((16 + 13) / (4 + 2))  # English and Korean only
    assert row_for([ENGLISH])["tokens_per_word"] == pytest.approx(16 / 4)
    assert row_for([KOREAN])["tokens_per_word"] == pytest.approx(13 / 2)
    assert row_for([ENGLISH, MIXED])["tokens_per_word"] == pytest.approx(16 / 4)
    for unspaced_only in ([CHINESE], [THAI], [MIXED], [CHINESE, THAI, MIXED]):
        assert math.isnan(row_for(unspaced_only)["tokens_per_word"])
    # the other columns still count every document
    assert row_for(list(HAND))["tokens_per_char"] == pytest.approx(103 / sum(len(t) for t in HAND))
    assert math.isnan(tokens_per_word(np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([], dtype=bool)))


def corpus_file(path: Path, docs: list[tuple[str, str]]) -> Path:
    """A jsonl corpus whose every document lands in the validation split (val fraction 0.5)."""
    rows = []
    for n, (source, text) in enumerate(docs):
        k = 0
        while split_of(f"d{n}-{k}", 0.5) != "val":
            k += 1
        rows.append(json.dumps({"id": f"d{n}-{k}", "text": text, "source": source}, ensure_ascii=False))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_compare_rows_and_meta(tmp_path):
    docs = [("en", ENGLISH), ("zh", CHINESE), ("th", THAI), ("ko", KOREAN), ("zh", MIXED), ("en", ENGLISH)]
    result = run_compare(str(corpus_file(tmp_path / "c.jsonl", docs)), ["bytes"], compressors=False, val_fraction=0.5)
    assert result.meta["val_documents"] == 6
    assert result.table.iloc[0]["tokens_per_word"] == pytest.approx((16 + 13 + 16) / (4 + 2 + 4))
    assert result.meta["tokens_per_word_documents"] == 3
    assert result.meta["tokens_per_word_bytes_share"] == pytest.approx((16 + 13 + 16) / (16 + 12 + 30 + 13 + 32 + 16))
    assert result.meta["tokens_per_word_sources_left_out"] == ["th", "zh"]
    assert "(37.8% of the bytes)" in caption(result)  # 45 / 119
    assert "over documents written in scripts that separate words with spaces" in caption(result)


def test_unspaced_only_corpus_is_empty_and_survives_a_saved_report(tmp_path):
    docs = [("zh", CHINESE), ("th", THAI), ("zh", MIXED)]
    result = run_compare(str(corpus_file(tmp_path / "c.jsonl", docs)), ["bytes"], compressors=False, val_fraction=0.5)
    assert math.isnan(result.table.iloc[0]["tokens_per_word"])
    assert result.meta["tokens_per_word_documents"] == 0 and result.meta["tokens_per_word_bytes_share"] == 0.0
    assert result.meta["tokens_per_word_sources_left_out"] == ["th", "zh"]
    out = write_report(result, tmp_path / "report")
    again = read_report(out)
    assert math.isnan(float(again.table.iloc[0]["tokens_per_word"]))
    line = next(x for x in markdown(again).splitlines() if x.startswith("| bytes |"))
    assert line.split(" | ")[5] == ""  # segmenter, vocab, tok/char, char/tok, bytes/tok, tok/word
    assert "(0.0% of the bytes); empty where a source has none" in caption(again)


def test_a_report_saved_before_the_rule_still_renders(tmp_path):
    docs = [("en", ENGLISH), ("zh", CHINESE)]
    out = write_report(run_compare(str(corpus_file(tmp_path / "c.jsonl", docs)), ["bytes"], compressors=False, val_fraction=0.5), tmp_path / "report")
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for key in ("tokens_per_word_documents", "tokens_per_word_bytes_share", "tokens_per_word_sources_left_out"):
        del payload["meta"][key]
    (out / "results.json").write_text(json.dumps(payload), encoding="utf-8")
    text = caption(read_report(out))
    assert "over every document" in text and "separate words with spaces" not in text


UNSPACED_IDS = ["zh_Hans", "zh_Hant", "yue_Hans", "ja_Jpan", "th_Thai", "lo_Laoo", "km_Khmr", "my_Mymr", "bo_Tibt"]
SPACED_IDS = ["en_Latn", "ru_Cyrl", "ko_Kore", "ar_Arab", "hi_Deva", "am_Ethi", "en_Brai"]


def test_udhr_scripts(shared_corpora):
    if not (shared_corpora / "udhr").is_dir():
        pytest.skip("no udhr corpus in the shared folder")
    texts = pd.concat([pd.read_parquet(p, columns=["id", "text"]) for p in sorted((shared_corpora / "udhr").glob("*.parquet"))]).set_index("id")["text"]
    present = set(texts.index)
    assert {"zh_Hans", "ja_Jpan", "th_Thai", "en_Latn", "ru_Cyrl", "ko_Kore"} <= present
    assert [i for i in UNSPACED_IDS if i in present and is_spaced(texts[i])] == []
    assert [i for i in SPACED_IDS if i in present and not is_spaced(texts[i])] == []

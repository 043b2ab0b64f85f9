"""Fairness across languages (toklab.fairness, `compare --parallel`): parity, Gini, worst languages
and scripts against hand computations, on a hand-made parallel corpus and on the shared udhr one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cli_helpers import cli_error, cli_ok
from toklab import ToklabError
from toklab.comparison import run_compare
from toklab.fairness import analyse, gini, language_key, resolve_reference, script_of
from toklab.reports import FAIRNESS_FILES, REPORT_FILES, read_report, write_report

# --- the pure functions, by hand ------------------------------------------------------------------


def test_gini_by_hand():
    # G = sum_i sum_j |x_i - x_j| / (2 n^2 mean)
    # [1, 2, 3, 4]: unordered differences 1+2+3+1+2+1 = 10, ordered 20; 2 * 16 * 2.5 = 80 -> 0.25
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)
    # [0, 0, 0, 1]: ordered differences 2 * 3 * 1 = 6; 2 * 16 * 0.25 = 8 -> 0.75
    assert gini([0, 0, 1, 0]) == pytest.approx(0.75)
    assert gini([5, 5, 5]) == 0.0
    assert gini([7]) == 0.0


# Two segmenters, six languages in three scripts: tokens and bytes chosen by hand.
COUNTS = [
    {"segmenter": "a", "language": "en_Latn", "tokens": 100, "bytes": 400},
    {"segmenter": "a", "language": "fr_Latn", "tokens": 120, "bytes": 450},
    {"segmenter": "a", "language": "de_Latn", "tokens": 300, "bytes": 500},
    {"segmenter": "a", "language": "ru_Cyrl", "tokens": 250, "bytes": 800},
    {"segmenter": "a", "language": "uk_Cyrl", "tokens": 200, "bytes": 700},
    {"segmenter": "a", "language": "zh_Hans", "tokens": 300, "bytes": 600},
    {"segmenter": "b", "language": "en_Latn", "tokens": 50, "bytes": 400},
    {"segmenter": "b", "language": "fr_Latn", "tokens": 50, "bytes": 450},
    {"segmenter": "b", "language": "de_Latn", "tokens": 50, "bytes": 500},
    {"segmenter": "b", "language": "ru_Cyrl", "tokens": 50, "bytes": 800},
    {"segmenter": "b", "language": "uk_Cyrl", "tokens": 50, "bytes": 700},
    {"segmenter": "b", "language": "zh_Hans", "tokens": 50, "bytes": 600},
]


def test_parity_gini_worst_and_scripts_by_hand():
    fairness = analyse(COUNTS, "en_Latn", top=2)
    a = fairness.per_language[fairness.per_language["segmenter"] == "a"].set_index("language")
    assert dict(a["parity"]) == pytest.approx({"en_Latn": 1.0, "fr_Latn": 1.2, "de_Latn": 3.0, "ru_Cyrl": 2.5, "uk_Cyrl": 2.0, "zh_Hans": 3.0})
    assert a.at["ru_Cyrl", "tokens_per_byte"] == pytest.approx(250 / 800)
    assert dict(a["script"]) == {"en_Latn": "Latn", "fr_Latn": "Latn", "de_Latn": "Latn", "ru_Cyrl": "Cyrl", "uk_Cyrl": "Cyrl", "zh_Hans": "Hans"}

    # per script: the median of its languages' parities; tokens/byte = total tokens / total bytes
    scripts = fairness.per_script.set_index(["segmenter", "script"])
    assert scripts.at[("a", "Latn"), "median_parity"] == pytest.approx(1.2)  # of 1, 1.2, 3 (the mean would be 1.73)
    assert scripts.at[("a", "Latn"), "tokens_per_byte"] == pytest.approx(520 / 1350)
    assert scripts.at[("a", "Cyrl"), "median_parity"] == pytest.approx(2.25)
    assert scripts.at[("a", "Cyrl"), "max_parity"] == pytest.approx(2.5)
    assert scripts.at[("a", "Cyrl"), "tokens_per_byte"] == pytest.approx(450 / 1500)
    assert scripts.at[("a", "Hans"), "languages"] == 1
    assert scripts.at[("b", "Cyrl"), "median_parity"] == pytest.approx(1.0)

    summary = fairness.summary.set_index("segmenter")
    assert summary.at["a", "reference_tokens"] == 100 and summary.at["b", "reference_tokens"] == 50
    assert summary.at["a", "languages"] == 6
    assert summary.at["a", "worst_language"] == "de_Latn"  # tied with zh_Hans at 3.0: by name
    assert summary.at["a", "worst_languages"] == "de_Latn 3.00, zh_Hans 3.00"
    assert summary.at["a", "worst_script"] == "Hans" and summary.at["a", "worst_script_parity"] == pytest.approx(3.0)
    assert summary.at["a", "median_parity"] == pytest.approx(2.25) and summary.at["a", "max_parity"] == pytest.approx(3.0)
    # parity sorted [1, 1.2, 2, 2.5, 3, 3]: unordered differences 6.7 + 5.7 + 2.5 + 1 + 0 = 15.9,
    # ordered 31.8; mean 12.7 / 6, 2 * 36 * 12.7 / 6 = 152.4
    assert summary.at["a", "gini_parity"] == pytest.approx(31.8 / 152.4)
    # tokens/byte [0.25, 0.2667, 0.6, 0.3125, 0.2857, 0.5], through the Gini checked by hand above
    assert summary.at["a", "gini_tokens_per_byte"] == pytest.approx(gini([100 / 400, 120 / 450, 300 / 500, 250 / 800, 200 / 700, 300 / 600]))
    # b spends the same tokens on every language: parity 1 everywhere, Gini of parity 0
    assert summary.at["b", "gini_parity"] == 0.0 and summary.at["b", "max_parity"] == 1.0


def test_language_keys_scripts_and_the_reference():
    assert language_key("ru_Cyrl") == "ru_Cyrl"
    assert language_key("udhr:zh_Hans") == "zh_Hans"
    assert language_key("mam_Latn_MX") == "mam_Latn_MX" and script_of("mam_Latn_MX") == "Latn"
    assert language_key("fr-gallo_Latn") == "fr-gallo_Latn" and script_of("fr-gallo_Latn") == "Latn"
    assert language_key("doc_1") is None and language_key("doc17") is None and language_key("en") is None
    assert language_key("doc17", {"language": "de"}) == "de" and script_of("de") == "unknown"
    assert resolve_reference("en", ["en_Brai", "en_Latn", "en_Shaw", "ru_Cyrl"]) == "en_Latn"
    assert resolve_reference("ru", ["en_Latn", "ru_Cyrl"]) == "ru_Cyrl"
    assert resolve_reference("sr_Latn", ["sr_Cyrl", "sr_Latn"]) == "sr_Latn"
    with pytest.raises(ToklabError, match="ambiguous"):
        resolve_reference("sr", ["sr_Cyrl", "sr_Latn"])
    with pytest.raises(ToklabError, match="not among the 2 languages"):
        resolve_reference("de", ["en_Latn", "ru_Cyrl"])


# --- compare --parallel on a hand-made parallel corpus ----------------------------------------------

# Two short texts, each written here in four languages (two documents per language, summed).
PARALLEL = {
    "en_Latn": ["The cat sleeps on the warm mat all afternoon.", "Tomorrow the market opens early, before the rain."],
    "de_Latn": ["Die Katze schläft den ganzen Nachmittag auf der warmen Matte.", "Morgen öffnet der Markt früh, vor dem Regen."],
    "ru_Cyrl": ["Кошка весь день спит на тёплом коврике.", "Завтра рынок откроется рано, до дождя."],
    "zh_Hans": ["猫整个下午都睡在温暖的垫子上。", "明天市场很早开门，在下雨之前。"],
}


@pytest.fixture()
def parallel_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "parallel.jsonl"
    rows = [{"id": f"part{i}:{language}", "text": text} for language, texts in PARALLEL.items() for i, text in enumerate(texts)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def _utf8(language: str) -> int:
    return sum(len(t.encode("utf-8")) for t in PARALLEL[language])


def test_compare_parallel_bytes_parity_is_the_byte_ratio(parallel_corpus, tmp_path):
    result = run_compare(str(parallel_corpus), ["bytes"], compressors=False, val_fraction=0.5, parallel=True)
    fairness = result.fairness
    assert fairness is not None and fairness.reference == "en_Latn"
    rows = fairness.per_language.set_index("language")
    expected = {language: _utf8(language) / _utf8("en_Latn") for language in PARALLEL}
    assert dict(rows["parity"]) == pytest.approx(expected)
    assert dict(rows["tokens"]) == {language: _utf8(language) for language in PARALLEL}
    assert set(rows["documents"]) == {2}  # both documents of each language, whichever split they are in
    assert fairness.meta["documents"] == 8 and fairness.meta["split"] == "all"
    assert fairness.meta["bytes"] == sum(_utf8(k) for k in PARALLEL)
    summary = fairness.summary.iloc[0]
    assert summary["gini_tokens_per_byte"] == 0.0  # one token per byte in every language
    assert summary["worst_language"] == max(expected, key=expected.get)
    assert summary["gini_parity"] == pytest.approx(gini(list(expected.values())))

    # the report folder holds the fairness files, and reading it back gives the same figures
    out = write_report(result, tmp_path / "report")
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES + FAIRNESS_FILES)
    assert "## Fairness across languages (reference en_Latn)" in (out / "table.md").read_text(encoding="utf-8")
    saved = pd.read_csv(out / "parity.csv").set_index("language")
    assert dict(saved["parity"]) == pytest.approx(expected)
    again = read_report(out)
    assert again.fairness is not None and again.fairness.reference == "en_Latn"
    pd.testing.assert_frame_equal(again.fairness.summary, fairness.summary, check_dtype=False)
    pd.testing.assert_frame_equal(again.fairness.per_script, fairness.per_script, check_dtype=False)


def test_compare_parallel_tiktoken_counts_match_tiktoken(parallel_corpus, shared_tiktoken):
    import tiktoken

    result = run_compare(str(parallel_corpus), ["bytes", "tiktoken:gpt2"], compressors=False, val_fraction=0.5, reference="ru")
    encoding = tiktoken.get_encoding("gpt2")
    tokens = {k: sum(len(encoding.encode_ordinary(t)) for t in texts) for k, texts in PARALLEL.items()}
    fairness = result.fairness
    assert fairness is not None and fairness.reference == "ru_Cyrl"
    rows = fairness.per_language[fairness.per_language["segmenter"] == "tiktoken:gpt2"].set_index("language")
    assert dict(rows["tokens"]) == tokens
    assert dict(rows["parity"]) == pytest.approx({k: n / tokens["ru_Cyrl"] for k, n in tokens.items()})
    # the same languages, documents and bytes for every segmenter
    per = fairness.per_language.groupby("segmenter")
    assert per["language"].apply(sorted).apply(tuple).nunique() == 1 and per["bytes"].sum().nunique() == 1


def test_parallel_is_found_on_its_own_and_can_be_turned_off(parallel_corpus, tmp_path):
    assert run_compare(str(parallel_corpus), ["bytes"], compressors=False, val_fraction=0.5).fairness is not None
    assert run_compare(str(parallel_corpus), ["bytes"], compressors=False, val_fraction=0.5, parallel=False).fairness is None
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({"id": f"doc{i}", "text": f"text number {i}"}) for i in range(20)) + "\n")
    result = run_compare(str(plain), ["bytes"], compressors=False, val_fraction=0.5)
    assert result.fairness is None and not any("parallel" in n for n in result.notes)


def test_a_report_without_fairness_loads_and_drops_stale_fairness_files(parallel_corpus, tmp_path):
    out = tmp_path / "report"
    write_report(run_compare(str(parallel_corpus), ["bytes"], compressors=False, val_fraction=0.5), out)
    assert (out / "parity.csv").is_file()
    write_report(run_compare(str(parallel_corpus), ["bytes"], compressors=False, val_fraction=0.5, parallel=False), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert "fairness" not in payload  # the shape of reports saved before the fairness section
    assert read_report(out).fairness is None


def test_cli_parallel_report_and_errors(parallel_corpus, tmp_path, capsys):
    out = tmp_path / "r"
    shown = cli_ok(capsys, "compare", "-c", parallel_corpus, "--val-fraction", "0.5", "-s", "bytes", "--no-compressors", "--parallel", "--out", out)
    assert "fairness across languages (reference en_Latn)" in shown
    again = cli_ok(capsys, "report", out)
    assert "fairness across languages (reference en_Latn)" in again and "worst languages" in again
    assert "fairness" in json.loads(cli_ok(capsys, "report", out, "--json"))

    line = cli_error(capsys, "compare", "-c", parallel_corpus, "--val-fraction", "0.5", "-s", "bytes", "--no-compressors", "--reference", "xx_Zzzz", "--out", tmp_path / "r2")
    assert "--reference xx_Zzzz is not among the 4 languages" in line
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({"id": f"doc{i}", "text": f"text number {i}"}) for i in range(20)) + "\n")
    line = cli_error(capsys, "compare", "-c", plain, "--val-fraction", "0.5", "-s", "bytes", "--no-compressors", "--parallel", "--out", tmp_path / "r3")
    assert "--parallel needs documents in several languages" in line and "no document" in line


# --- the shared udhr corpus --------------------------------------------------------------------------


def test_udhr_bytes_parity_against_the_parquet(shared_corpora):
    import pyarrow.parquet as pq

    folder = shared_corpora / "udhr"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    texts = {}
    for shard in sorted(folder.glob("*.parquet")):
        for row in pq.read_table(shard, columns=["id", "text"]).to_pylist():
            texts[row["id"]] = row["text"]
    result = run_compare(str(folder), ["bytes"], compressors=False)  # found on its own: every id is a language tag
    fairness = result.fairness
    assert fairness is not None and fairness.reference == "en_Latn"  # en_Latn, not en_Brai / en_Dsrt / en_Shaw
    rows = fairness.per_language.set_index("language")
    assert len(rows) == len(texts) and fairness.meta["val_languages"] < len(texts)  # both splits
    english = len(texts["en_Latn"].encode("utf-8"))
    for language in ("ru_Cyrl", "zh_Hans", "hi_Deva", "ar_Arab", "fr_Latn"):
        assert rows.at[language, "parity"] == pytest.approx(len(texts[language].encode("utf-8")) / english)
    assert rows.at["ru_Cyrl", "script"] == "Cyrl"


def test_a_damaged_fairness_section_is_a_one_line_error(parallel_corpus, tmp_path):
    out = write_report(run_compare(str(parallel_corpus), ["bytes"], compressors=False, val_fraction=0.5), tmp_path / "report")
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    del payload["fairness"]["per_language"][0]["tokens"]
    (out / "results.json").write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(ToklabError, match="fairness.per_language is not a list of rows"):
        read_report(out)
    payload["fairness"] = {"reference": "xx_Zzzz", "per_language": [{"segmenter": "bytes", "language": "en_Latn", "tokens": 1, "bytes": 1}]}
    (out / "results.json").write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(ToklabError, match="reference language xx_Zzzz has no counts"):
        read_report(out)

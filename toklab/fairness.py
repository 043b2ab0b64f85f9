"""Fairness across languages on parallel text: parity, a Gini coefficient, the worst languages and scripts.

Pure functions over plain data. The input is one row per (segmenter, language): the tokens, bytes
and characters of all that language's documents. On a parallel corpus (the same text translated
into every language) a language's *parity* is its tokens divided by the reference language's
tokens for the same content, per segmenter (Petrov et al. 2023, "Language Model Tokenizers
Introduce Unfairness Between Languages"): parity 2 means twice the tokens for the same text.

A document's language is its `language` (or `lang`) field, else its id when the id (or the part
after its last ':' or '/') reads as a language tag with a script, such as `ru_Cyrl`,
`udhr:zh_Hans` or `mam_Latn_MX`; its script is the four-letter subtag (`Cyrl`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from toklab.errors import ToklabError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_REFERENCE = "en"  # English: `en`, else `en_Latn`, else the one key whose language is en
ENGLISH_LATIN = "en_Latn"
TOP = 5  # worst languages listed per segmenter
# language, optional variant subtags, then the script (4 letters, title case), then an optional region
LANGUAGE_TAG = re.compile(r"^(?P<language>[a-z]{2,3})(?:[-_][A-Za-z0-9]+)*?[-_](?P<script>[A-Z][a-z]{3})(?:[-_](?:[A-Z]{2}|[0-9]{3}))?$")
SCRIPT_SUBTAG = re.compile(r"^[A-Z][a-z]{3}$")
LANGUAGE_FIELDS = ("language", "lang")
PER_LANGUAGE_COLUMNS = ["segmenter", "language", "script", "documents", "bytes", "chars", "tokens", "tokens_per_byte", "parity"]
PER_SCRIPT_COLUMNS = ["segmenter", "script", "languages", "median_parity", "max_parity", "tokens", "bytes", "tokens_per_byte"]
SUMMARY_COLUMNS = [
    "segmenter", "languages", "reference_tokens", "median_parity", "max_parity", "worst_language",
    "worst_languages", "worst_script", "worst_script_parity", "gini_tokens_per_byte", "gini_parity",
]  # fmt: skip


def language_key(doc_id: str, meta: Mapping[str, Any] | None = None) -> str | None:
    """The language a document is written in, or None: its `language`/`lang` field, else its id
    (or the id's last ':'- or '/'-separated part) when that is a language tag with a script."""
    for name in LANGUAGE_FIELDS:
        value = (meta or {}).get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    tail = re.split(r"[:/]", doc_id)[-1]
    return tail if LANGUAGE_TAG.match(tail) else None


def script_of(language: str) -> str:
    """The script subtag of a language key (`ru_Cyrl` -> `Cyrl`, `mam_Latn_MX` -> `Latn`); else
    the part after the last '_' or '-' (`xx_Foo` -> `Foo`); `unknown` when there is none."""
    parts = re.split(r"[-_]", language)
    scripts = [p for p in parts[1:] if SCRIPT_SUBTAG.match(p)]
    if scripts:
        return scripts[-1]
    return parts[-1] if len(parts) > 1 and parts[-1] else "unknown"


def resolve_reference(wanted: str, languages: Iterable[str]) -> str:
    """The language key `wanted` names among `languages`: the key itself, else the one key whose
    language subtag is `wanted` (`ru` -> `ru_Cyrl`); the default `en` prefers `en_Latn` among
    several English keys. Absent or ambiguous is a ToklabError."""
    present = sorted(set(languages))
    if wanted in present:
        return wanted
    matches = [k for k in present if re.split(r"[-_]", k)[0] == wanted]
    if len(matches) == 1:
        return matches[0]
    if wanted == DEFAULT_REFERENCE and ENGLISH_LATIN in matches:  # udhr also has English in Braille, Deseret and Shavian
        return ENGLISH_LATIN
    if matches:
        raise ToklabError(f"--reference {wanted} is ambiguous: the corpus has {', '.join(matches)}; name one of them")
    near = ", ".join(present[:8]) + (", ..." if len(present) > 8 else "")
    raise ToklabError(f"--reference {wanted} is not among the {len(present)} languages of the parallel corpus ({near}); pick one with --reference")


def gini(values: Sequence[float]) -> float:
    """The Gini coefficient of non-negative values: sum_i sum_j |x_i - x_j| / (2 n^2 mean).
    0 when every value is the same; towards 1 when one value holds everything. NaN when empty."""
    import numpy as np

    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or x.sum() <= 0:
        return float("nan") if n == 0 else 0.0
    # sorted: sum_i sum_j |x_i - x_j| = 2 sum_i (2i - n - 1) x_i, i from 1
    ranks = np.arange(1, n + 1)
    return float(2 * np.sum((2 * ranks - n - 1) * x) / (2 * n * n * x.mean()))


def per_language(counts: "pd.DataFrame | Sequence[Mapping[str, Any]]", reference: str) -> "pd.DataFrame":
    """One row per (segmenter, language) with its script, tokens per byte and parity (tokens over
    the reference language's tokens under the same segmenter). `counts` holds segmenter, language,
    tokens, bytes, and optionally documents and chars; other columns are kept after these."""
    import numpy as np
    import pandas as pd

    table = pd.DataFrame(counts).copy()
    for name in ("documents", "chars"):
        if name not in table:
            table[name] = np.nan
    if table.empty:
        return pd.DataFrame(columns=PER_LANGUAGE_COLUMNS)
    if reference not in set(table["language"]):
        raise ToklabError(f"the reference language {reference} has no counts")
    table["script"] = [script_of(k) for k in table["language"]]
    table["tokens_per_byte"] = table["tokens"] / table["bytes"].where(table["bytes"] > 0)
    ref = table[table["language"] == reference].set_index("segmenter")["tokens"]
    ref_tokens = table["segmenter"].map(ref).astype(float)
    table["parity"] = table["tokens"] / ref_tokens.where(ref_tokens > 0)
    extras = [c for c in table.columns if c not in PER_LANGUAGE_COLUMNS]  # e.g. compare's split column
    return table.reindex(columns=PER_LANGUAGE_COLUMNS + extras).reset_index(drop=True)


def per_script(languages: "pd.DataFrame") -> "pd.DataFrame":
    """One row per (segmenter, script): how many languages, the median and largest parity of its
    languages (each language counts once), and total tokens over total bytes."""
    import pandas as pd

    rows = []
    for (segmenter, script), group in languages.groupby(["segmenter", "script"], sort=False):
        tokens, n_bytes = int(group["tokens"].sum()), int(group["bytes"].sum())
        rows.append({
            "segmenter": segmenter, "script": script, "languages": len(group),
            "median_parity": float(group["parity"].median()), "max_parity": float(group["parity"].max()),
            "tokens": tokens, "bytes": n_bytes, "tokens_per_byte": tokens / n_bytes if n_bytes else float("nan"),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=PER_SCRIPT_COLUMNS)


def worst(languages: "pd.DataFrame", top: int = TOP) -> dict[str, list[tuple[str, float]]]:
    """Per segmenter, the `top` languages of highest parity (most tokens for the same text), worst first."""
    out: dict[str, list[tuple[str, float]]] = {}
    for segmenter, group in languages.groupby("segmenter", sort=False):
        ranked = group.sort_values(["parity", "language"], ascending=[False, True], kind="stable").head(top)
        out[str(segmenter)] = [(str(k), float(p)) for k, p in zip(ranked["language"], ranked["parity"])]
    return out


def summary(languages: "pd.DataFrame", scripts: "pd.DataFrame", reference: str, top: int = TOP) -> "pd.DataFrame":
    """One row per segmenter: languages, the reference's tokens, median and largest parity, the worst
    languages, the worst script (highest median parity), and Gini coefficients across languages of
    tokens per byte and of parity (tokens for the same content)."""
    import pandas as pd

    worst_languages = worst(languages, top)
    rows = []
    for segmenter, group in languages.groupby("segmenter", sort=False):
        ref = group.loc[group["language"] == reference, "tokens"]
        by_script = scripts[scripts["segmenter"] == segmenter].sort_values(["median_parity", "script"], ascending=[False, True], kind="stable")
        listed = worst_languages.get(str(segmenter), [])
        rows.append({
            "segmenter": segmenter, "languages": len(group), "reference_tokens": int(ref.iloc[0]) if len(ref) else None,
            "median_parity": float(group["parity"].median()), "max_parity": float(group["parity"].max()),
            "worst_language": listed[0][0] if listed else None,
            "worst_languages": ", ".join(f"{k} {p:.2f}" for k, p in listed),
            "worst_script": by_script["script"].iloc[0] if len(by_script) else None,
            "worst_script_parity": float(by_script["median_parity"].iloc[0]) if len(by_script) else float("nan"),
            "gini_tokens_per_byte": gini(group["tokens_per_byte"].dropna()),
            "gini_parity": gini(group["parity"].dropna()),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


@dataclass
class Fairness:
    """The fairness section of a compare run on parallel text."""

    reference: str
    per_language: "pd.DataFrame"  # PER_LANGUAGE_COLUMNS
    per_script: "pd.DataFrame"  # PER_SCRIPT_COLUMNS
    summary: "pd.DataFrame"  # SUMMARY_COLUMNS
    meta: dict[str, Any] = field(default_factory=dict)  # what was measured: split, documents, bytes


def analyse(counts: "pd.DataFrame | Sequence[Mapping[str, Any]]", reference: str, *, top: int = TOP, meta: dict[str, Any] | None = None) -> Fairness:
    """Parity, per-script figures and the per-segmenter summary from per-(segmenter, language) counts."""
    languages = per_language(counts, reference)
    scripts = per_script(languages)
    return Fairness(reference, languages, scripts, summary(languages, scripts, reference, top), dict(meta or {}))

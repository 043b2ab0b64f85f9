"""toklab: a tokeniser and compression-analysis laboratory.

The public Python API mirrors the command line: every command is a function here
that returns plain data (dataclasses or DataFrames).
"""

__version__ = "0.1.0"

from toklab.errors import ToklabError
from toklab.corpus import (
    Corpus,
    CorpusInfo,
    CorpusOptions,
    Document,
    ReadStats,
    build_default_corpus,
    corpus_info,
    open_corpus,
    split_of,
)

from toklab.comparison import CompareResult, compare, run_compare
from toklab.filter import FilterResult, filter_corpus
from toklab.pretrain import SeedsResult, pretrain, pretrain_seeds, sample
from toklab.gpt.train import RunResult
from toklab.study import StudyResult, run_study
from toklab.segmenters import Segmenter, get_segmenter, load_segmenter

__all__ = [
    "CompareResult",
    "FilterResult",
    "filter_corpus",
    "RunResult",
    "StudyResult",
    "run_study",
    "pretrain",
    "pretrain_seeds",
    "SeedsResult",
    "sample",
    "Segmenter",
    "compare",
    "get_segmenter",
    "load_segmenter",
    "run_compare",
    "__version__",
    "ToklabError",
    "Corpus",
    "CorpusInfo",
    "CorpusOptions",
    "Document",
    "ReadStats",
    "build_default_corpus",
    "corpus_info",
    "open_corpus",
    "split_of",
]

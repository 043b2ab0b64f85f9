"""toklab: a tokeniser and compression-analysis laboratory.

The public Python API mirrors the command line: every command is a function here
that returns plain data (dataclasses or DataFrames).

Names are resolved on first use (PEP 562), so `import toklab` (and the CLI, which imports
`toklab.cli`) loads no subsystem it does not need. Modules inside the package never import
from here: they import the module that defines a name.
"""

from importlib import import_module as _import_module

from toklab._version import __version__

# public name -> the module that defines it
_HOMES = {
    "ToklabError": "toklab.errors",
    "Corpus": "toklab.corpus",
    "CorpusInfo": "toklab.corpus",
    "CorpusOptions": "toklab.corpus",
    "Document": "toklab.corpus",
    "ReadStats": "toklab.corpus",
    "build_default_corpus": "toklab.corpus",
    "corpus_info": "toklab.corpus",
    "open_corpus": "toklab.corpus",
    "split_of": "toklab.corpus",
    "CompareResult": "toklab.comparison",
    "compare": "toklab.comparison",
    "run_compare": "toklab.comparison",
    "FilterResult": "toklab.filter",
    "filter_corpus": "toklab.filter",
    "SeedsResult": "toklab.pretrain",
    "pretrain": "toklab.pretrain",
    "pretrain_seeds": "toklab.pretrain",
    "sample": "toklab.pretrain",
    "RunResult": "toklab.gpt.train",
    "TrainConfig": "toklab.gpt.train",
    "Budget": "toklab.gpt.train",
    "StudyResult": "toklab.study",
    "run_study": "toklab.study",
    "Segmenter": "toklab.segmenters",
    "get_segmenter": "toklab.segmenters",
    "load_segmenter": "toklab.segmenters",
}

__all__ = [
    "CompareResult",
    "FilterResult",
    "filter_corpus",
    "RunResult",
    "TrainConfig",
    "Budget",
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


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'toklab' has no attribute {name!r}")
    value = getattr(_import_module(home), name)
    globals()[name] = value  # cached: the next lookup skips this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

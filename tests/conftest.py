"""Shared fixtures: an isolated toklab cache, and the read-only ../shared folder when present."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The tests mirror the package's folders (tests/corpus, tests/segmenters, ...); the shared helpers
# (conftest's SHARED, cli_helpers) are imported by name from every one of them.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
# The read-only folder of corpora and tiktoken vocabularies beside the checkout; TOKLAB_SHARED_DIR
# points elsewhere (a clone that does not sit beside it).
SHARED = Path(os.environ["TOKLAB_SHARED_DIR"]).expanduser() if os.environ.get("TOKLAB_SHARED_DIR") else REPO.parent / "shared"


def tiktoken_dir() -> Path | None:
    """tiktoken's vocabularies: TIKTOKEN_CACHE_DIR when it names a folder, else SHARED/tiktoken."""
    explicit = os.environ.get("TIKTOKEN_CACHE_DIR")
    if explicit and Path(explicit).expanduser().is_dir():
        return Path(explicit).expanduser()
    return SHARED / "tiktoken" if (SHARED / "tiktoken").is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never touch the user's cache; the default corpus is built once per session."""
    cache = tmp_path_factory.mktemp("toklab-cache")
    old = os.environ.get("TOKLAB_CACHE_DIR")
    os.environ["TOKLAB_CACHE_DIR"] = str(cache)
    vocabularies = tiktoken_dir()
    if vocabularies is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(vocabularies))
    yield cache
    if old is None:
        os.environ.pop("TOKLAB_CACHE_DIR", None)
    else:
        os.environ["TOKLAB_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    path = SHARED / "corpora"
    if not path.is_dir():
        pytest.skip(f"{path} is not present (set TOKLAB_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def default_corpus_build(isolated_cache: Path):
    import toklab

    return toklab.build_default_corpus()


@pytest.fixture(scope="session")
def shared_tiktoken() -> Path:
    path = tiktoken_dir()
    if path is None:
        pytest.skip("no tiktoken vocabularies: set TIKTOKEN_CACHE_DIR or TOKLAB_SHARED_DIR")
    return path


SLOW = {  # over about 5 s each here, and not building the default corpus (those are marked below)
    "test_filter.py::test_a_real_kill_mid_run_then_resume_gives_byte_identical_shards",
    "test_readers.py::test_streaming_a_30_mb_jsonl_zst_keeps_memory_bounded",
    "test_segmenters.py::test_fast_path_equals_tokenizers_on_shared_corpora",
    "test_bad_input_runs.py::test_overwrite_checks_everything_first_and_keeps_files_it_did_not_write",
    "test_bad_input_runs.py::test_study_overwrite_checks_the_budgets_first_and_keeps_other_files",
    "test_pretrain.py::test_seeds_train_separate_runs_and_give_a_t_interval",
    "test_default_corpus.py::test_first_use_builds_it",
    "test_default_corpus.py::test_docstrings_are_read_without_importing",
    "test_gpu_kit.py::test_a_failed_stage_is_recorded_and_the_next_one_runs",
    "test_gpt_model.py::test_gpt2_124m_param_count",
    "test_interrupt.py::test_training_through_the_child_gives_the_same_files_and_ids",
    "test_interrupt.py::test_ctrl_c_during_training_exits_at_once_and_leaves_nothing",
    "test_consistency.py::test_filter_and_study_state_the_delivered_vocabulary_size",
    "test_pretrain.py::test_resume_gives_the_same_losses",
    "test_bad_input_runs.py::test_gpu_scale_settings_on_a_cpu_are_refused_without_yes",
    "test_seg_sentencepiece.py::test_spm_file_kind_reports_lossy_models",
    "test_seg_sentencepiece.py::test_trained_models_are_lossless_with_the_requested_size",
    "test_seg_sentencepiece.py::test_training_is_deterministic",
    "test_filter_safety.py::test_rewriting_a_report_folder_keeps_the_users_files",
    "test_filter.py::test_unsafe_out_is_refused_and_the_input_is_untouched",
}
SLOW_MODULES = ("test_study.py::",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow`: every test that needs the embedded default corpus (its first build takes a while),
    the study and default-corpus modules, and the few long ones in SLOW; `pytest -m "not slow"`
    is the quick subset."""
    for item in items:
        name = item.nodeid.split("/")[-1].split("[")[0]
        if "default_corpus_build" in getattr(item, "fixturenames", ()) or name in SLOW or name.startswith(SLOW_MODULES):
            item.add_marker(pytest.mark.slow)


def poison_training_loss(monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
    """Make the GPT's `at_call`-th training forward pass return a NaN loss (evaluation is untouched)."""
    from toklab.gpt.model import GPT

    real_forward = GPT.forward
    calls = {"n": 0}

    def poisoned(self, idx, targets=None, reduction="mean"):
        logits, loss = real_forward(self, idx, targets, reduction)
        if self.training:
            calls["n"] += 1
            if calls["n"] == at_call:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", poisoned)

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


# --- long documents: one long real text and a small CUT_CHARS, for every kind's tests ---

LONG_CHARS = 1_200_000  # the long text: real documents joined with "\n"
CUT = 50_000  # CUT_CHARS in these tests, so the long text comes in about 24 pieces


@pytest.fixture(scope="module")
def long_text(shared_corpora) -> str:
    """Real documents of the four shared corpora, in turn, joined with "\n"."""
    import toklab

    streams = [iter(toklab.open_corpus(str(shared_corpora / name), val_fraction=0.0).documents()) for name in ("sotu", "email", "code", "udhr")]
    docs: list[str] = []
    size = 0
    while size < LONG_CHARS and streams:
        for stream in list(streams):
            doc = next(stream, None)
            if doc is None:
                streams.remove(stream)
                continue
            docs.append(doc.text)
            size += len(doc.text) + 1
    return "\n".join(docs)


@pytest.fixture
def small_cut(monkeypatch):
    import toklab.segmenters.base as base

    monkeypatch.setattr(base, "CUT_CHARS", CUT)
    monkeypatch.setenv("TOKLAB_CUT_CHARS", str(CUT))


def long_corpus(tmp_path: Path, long_text: str, split: str, fraction: float = 0.5) -> tuple[Path, list[dict]]:
    """A jsonl corpus: a few short documents and one long one that falls in `split`."""
    import json

    from toklab import split_of

    long_id = next(f"long-{k}" for k in range(1000) if split_of(f"long-{k}", fraction) == split)
    records = [{"id": f"short-{k}", "text": f"short document {k}\nwith two lines /{k}"} for k in range(12)]
    records.insert(5, {"id": long_id, "text": long_text})
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path, records


SLOW = {  # over about 5 s each here, and not building the default corpus (those are marked below)
    "test_patchers.py::test_entropy_flags_are_causal",
    "test_filter.py::test_a_real_kill_mid_run_then_resume_gives_byte_identical_shards",
    "test_readers.py::test_streaming_a_30_mb_jsonl_zst_keeps_memory_bounded",
    "test_segmenters.py::test_fast_path_equals_tokenizers_on_shared_corpora",
    "test_bad_input_runs.py::test_overwrite_checks_everything_first_and_keeps_files_it_did_not_write",
    "test_bad_input_runs.py::test_study_overwrite_checks_the_budgets_first_and_keeps_other_files",
    "test_pretrain.py::test_seeds_train_separate_runs_and_give_a_t_interval",
    "test_default_corpus.py::test_first_use_builds_it_and_a_rebuild_is_deterministic",
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
    "test_audit.py::test_study_with_allow_lossy_trains_and_notes_every_audit",
    # torchrun jobs of 2 processes (each imports torch): about 10 s each on a quiet 2-core machine
    "test_ddp.py::test_two_processes_give_the_losses_and_bits_per_byte_of_one",
    "test_ddp.py::test_only_rank_0_writes_files",
    "test_ddp.py::test_a_killed_two_process_run_resumes_to_the_same_losses",
    "test_ddp.py::test_a_crash_on_one_rank_ends_the_job_with_one_line",
    "test_ddp.py::test_study_trains_each_run_in_two_processes",
    "test_ddp.py::test_a_minutes_budget_stops_every_rank_at_the_same_step",
    # datatrove: a local Ray instance starts in about 15 s; the others run whole filter and token passes
    "test_datatrove.py::test_ray_executor_writes_what_toklab_filter_writes",
    "test_datatrove.py::test_token_shard_writer_feeds_pretrain",
    "test_datatrove.py::test_cli_executor_local_and_missing_datatrove",
    "test_datatrove.py::test_overwrite_removes_the_engine_folder",
    "test_datatrove.py::test_a_real_kill_stops_the_tasks_and_resume_finishes_the_rest",
}
# equality with the old implementations kept as references (issue 19's speed work): CI runs them
SLOW_MODULES = ("test_study.py::", "test_entropy_speed.py::", "test_zstd_dict_speed.py::", "test_long_documents.py::",
                "test_long_pretrained.py::", "test_long_entropy_transformer.py::")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow`: every test that needs the embedded default corpus (its first build takes a while),
    the study and default-corpus modules, and the few long ones in SLOW; `pytest -m "not slow"`
    is the quick subset."""
    for item in items:
        name = item.nodeid.split("/")[-1].split("[")[0]
        if "default_corpus_build" in getattr(item, "fixturenames", ()) or name in SLOW or name.startswith(SLOW_MODULES):
            item.add_marker(pytest.mark.slow)


def poison_training_loss(monkeypatch: pytest.MonkeyPatch, at_call: int, model_class: type | None = None) -> None:
    """Make the model's `at_call`-th training forward pass return a NaN loss (evaluation is
    untouched). The model is the GPT unless `model_class` names another (the BLT)."""
    from toklab.gpt.model import GPT

    model_class = model_class or GPT
    real_forward = model_class.forward
    calls = {"n": 0}

    def poisoned(self, idx, targets=None, reduction="mean"):
        logits, loss = real_forward(self, idx, targets, reduction)
        if self.training:
            calls["n"] += 1
            if calls["n"] == at_call:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(model_class, "forward", poisoned)


PRETRAIN_WORDS = "the cat sat on a mat and the dog ran to the park where birds sing all day long".split()


def write_word_corpus(path: Path, docs: int, words: int, seed: int) -> str:
    """A JSONL corpus of `docs` documents of `words` random words each: small, fast to train on."""
    import json

    import numpy as np

    rng = np.random.default_rng(seed)
    lines = [json.dumps({"id": str(i), "text": " ".join(PRETRAIN_WORDS[j] for j in rng.integers(0, len(PRETRAIN_WORDS), words))}) for i in range(docs)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def val_records(corpus_file: str) -> list[dict]:
    """The records of a JSONL corpus that fall in the validation split (val_fraction 0.1)."""
    import json

    from toklab.corpus import split_of

    records = [json.loads(line) for line in open(corpus_file, encoding="utf-8")]
    return [r for r in records if split_of(r["id"], 0.1) == "val"]


def crash_after_checkpoints(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Make the run die (KeyboardInterrupt) right after its `count`-th checkpoint is written."""
    import toklab.gpt.train as train_module

    real_save = train_module.Trainer.save_checkpoint
    saves = {"n": 0}

    def crash(self):  # noqa: ANN001, ANN202
        real_save(self)
        saves["n"] += 1
        if saves["n"] == count:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module.Trainer, "save_checkpoint", crash)

"""Ctrl-C during training: native trainers (tokenizers, SentencePiece, zstd) run in a child process
(toklab.segmenters.child), so an interrupt ends the run at once, kills the child and leaves
nothing in the cache; and training through the child gives exactly what training in-process gives."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import toklab
from conftest import SHARED  # ../shared, or TOKLAB_SHARED_DIR
from toklab import ToklabError
from toklab.segmenters import child, get_segmenter

CORPORA = SHARED / "corpora"
MARK = b"toklab.segmenters.child"  # in the command line of every training child
LINUX = sys.platform.startswith("linux")  # the tests find processes through /proc
PROMPT = 3.0  # seconds an interrupted run may take to exit (it took 0.1-0.4 s here; 60-400 s before)
TEXT = "The President's address, 1862: 40 states, naïve café — ünïcödé ▁ and\ttabs.\n\nNew paragraph."


def needs_shared() -> None:
    if not CORPORA.is_dir():
        pytest.skip(f"{CORPORA} is not present (set TOKLAB_SHARED_DIR)")


# --- processes -----------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """The training children (by their command line) whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and MARK in cmdline:
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def gone(pids: list[int], timeout: float = 2.0) -> bool:
    return wait_until(lambda: not any(running(p) for p in pids), timeout)


# --- the command line: Ctrl-C ------------------------------------------------------------------------


def docs_read(line: str) -> int | None:
    match = re.search(r"\| ([\d,]+) docs", line)
    return int(match.group(1).replace(",", "")) if match else None


def read_all(lines: list[str], spec: str) -> bool:
    """Whether the progress lines say the whole corpus has been read: two lines in a row with the
    same count (while reading, each line comes with a new document)."""
    counts = [docs_read(line) for line in lines if line.startswith(f"training {spec}")]
    return len(counts) >= 2 and counts[-1] is not None and counts[-1] == counts[-2]


@pytest.mark.skipif(not LINUX, reason="finds the child process through /proc")
@pytest.mark.parametrize(
    "spec, corpus, when",
    [
        # SentencePiece (C++) after the whole corpus is read: 60-400 s to Ctrl-C before, as the trainer
        # only returns when done. Trains for minutes here; reading takes about 8 s.
        pytest.param("unigram:32k", "email", "after reading", marks=pytest.mark.slow),
        # tokenizers (Rust) while the texts stream in: about 20 s before. About 40 s of training here.
        ("bpe:32k", "email", "while reading"),
        # zstd's dictionary trainer (C): 35-50 s before.
        pytest.param("zstd-dict:32k", "email", "after reading", marks=pytest.mark.slow),
    ],
)
def test_ctrl_c_during_training_exits_at_once_and_leaves_nothing(tmp_path: Path, spec: str, corpus: str, when: str) -> None:
    needs_shared()
    cache, temp, out = tmp_path / "cache", tmp_path / "tmp", tmp_path / "out"
    temp.mkdir()
    env = dict(os.environ, TOKLAB_CACHE_DIR=str(cache), TMPDIR=str(temp))
    command = [sys.executable, "-m", "toklab", "tokenizer", "train", spec, "--corpus", str(CORPORA / corpus), "--out", str(out), "--verbose"]
    # as from a terminal: a test run started in the background (`pytest &` in a script) ignores SIGINT,
    # and a child would inherit that and never see the Ctrl-C this test sends
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []

    def read() -> None:
        for line in process.stderr:  # type: ignore[union-attr]
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: any(line.startswith(f"training {spec}") for line in lines), 60), lines
        time.sleep(2.0)  # into the training itself (the child starts after 64 KiB and imports in about 1 s)
        if when == "after reading":  # (code that trains in-process prints no more lines: then after 30 s)
            wait_until(lambda: read_all(lines, spec), 30)
            time.sleep(1.0)
        assert process.poll() is None, "training ended before it could be interrupted; use a longer one"
        kids = children_of(process.pid)
        start = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(PROMPT + 10)
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.monotonic() - start
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(5)
    err = "".join(lines)
    assert seconds < PROMPT, f"still running {seconds:.1f} s after Ctrl-C (exit code {code})"
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err
    assert kids, "training ran in no child process"
    assert gone(kids), f"training child {kids} still runs"
    segmenters = cache / "segmenters"
    assert not segmenters.exists() or not list(segmenters.iterdir()), list(segmenters.iterdir())  # no entry, whole or half-written
    assert not out.exists() or not list(out.iterdir())
    assert not list(temp.iterdir()), list(temp.iterdir())  # the child's work folder is removed


# --- the same result through the child ---------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the runs that went through a child process."""
    calls: list[int] = []
    original = child._Child.run

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(child._Child, "run", counted)
    return calls


def saved_files(segmenter, folder: Path) -> dict[str, bytes]:
    segmenter.save(folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    "spec, size",
    [("bpe:2k", 400_000), ("unigram:2k", 400_000), ("spm-bpe:2k", 400_000), ("zstd-dict:2k,dict_size=16kib,k=64,d=8", 150_000)],
)
def test_training_through_the_child_gives_the_same_files_and_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spy: list[int], spec: str, size: int) -> None:
    needs_shared()
    corpus = toklab.open_corpus(str(CORPORA / "sotu"), max_bytes=size)  # more than IN_PROCESS_BELOW
    through_child = get_segmenter(spec, corpus, cache=False)
    assert spy == [1], "the child was not used"
    monkeypatch.setattr(child, "IN_PROCESS_BELOW", 1 << 62)
    in_process = get_segmenter(spec, corpus, cache=False)
    assert spy == [1]
    assert saved_files(through_child, tmp_path / "child") == saved_files(in_process, tmp_path / "in-process")
    text = TEXT + "".join(doc.text for doc in corpus.val())[:20_000]
    assert through_child.encode(text) == in_process.encode(text)
    assert through_child.decode(through_child.encode(text)) == text
    assert type(through_child) is type(in_process) and through_child.spec == in_process.spec
    assert through_child.params == in_process.params


def test_small_inputs_train_in_process(tmp_path: Path, spy: list[int]) -> None:
    texts = [TEXT * 20] * 20  # about 40 KB: less than the child's start-up would cost
    assert child.run_in_child(count_chars, texts) == sum(map(len, texts))
    (tmp_path / "small.txt").write_text("\n".join(texts), encoding="utf-8")
    segmenter = get_segmenter("bpe:300", toklab.open_corpus(str(tmp_path / "small.txt"), lines=True), cache=False)
    assert segmenter.decode(segmenter.encode(TEXT)) == TEXT
    assert spy == []


# --- errors and interruptions in the helper ----------------------------------------------------------


def count_chars(texts: Iterator[str]) -> int:
    return sum(len(t) for t in texts)


def fail_plainly(texts: Iterator[str]) -> int:
    for _ in texts:
        pass
    raise ValueError("no good\nsecond line")


def fail_with_toklab_error(texts: Iterator[str]) -> int:
    raise ToklabError("cannot train this: the text is too short")


class OddError(Exception):
    def __init__(self, code: int, why: str) -> None:  # not rebuildable from its message alone
        super().__init__(f"odd {code}: {why}")


def fail_oddly(texts: Iterator[str]) -> int:
    raise OddError(7, "the reason")


def sleep_long(texts: Iterator[str]) -> int:
    count = sum(1 for _ in texts)
    time.sleep(120)
    return count


def big_texts(n: int = 200) -> list[str]:
    return [f"document {i}: " + "some words of text " * 100 for i in range(n)]  # about 400 KB


def test_the_result_comes_back(spy: list[int]) -> None:
    texts = big_texts()
    assert child.run_in_child(count_chars, texts, in_process_below=0) == sum(map(len, texts))
    assert spy == [1]


def test_an_error_in_the_child_is_raised_as_itself(spy: list[int]) -> None:
    with pytest.raises(ValueError, match="no good") as info:
        child.run_in_child(fail_plainly, big_texts())
    assert spy == [1] and type(info.value) is ValueError
    with pytest.raises(ToklabError, match="^cannot train this: the text is too short$"):
        child.run_in_child(fail_with_toklab_error, big_texts())
    with pytest.raises(RuntimeError, match="^OddError: odd 7: the reason$"):  # cannot be rebuilt: the closest kind
        child.run_in_child(fail_oddly, big_texts())


def test_a_training_error_through_the_child_is_a_one_line_toklab_error(spy: list[int]) -> None:
    needs_shared()
    corpus = toklab.open_corpus(str(CORPORA / "sotu"), max_bytes=200_000)
    with pytest.raises(ToklabError) as info:
        get_segmenter("unigram:200k", corpus, cache=False)  # more pieces than the text supports
    assert spy == [1]
    assert "\n" not in str(info.value) and "supports at most" in str(info.value)


@pytest.mark.skipif(not LINUX, reason="finds the child process through /proc")
def test_an_error_while_reading_the_texts_kills_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    seen: list[int] = []

    def texts() -> Iterator[str]:
        yield from big_texts()
        assert wait_until(lambda: children_of(os.getpid()), 30)
        seen.extend(children_of(os.getpid()))
        raise ToklabError("a corrupt shard")

    with pytest.raises(ToklabError, match="a corrupt shard"):
        child.run_in_child(sleep_long, texts())
    assert seen and gone(seen)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not LINUX, reason="finds the child process through /proc")
def test_keyboard_interrupt_while_the_child_works_kills_it_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    seen: list[int] = []

    def waiting() -> None:  # called while the child works: Ctrl-C arrives now
        seen.extend(children_of(os.getpid()))
        raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        child.run_in_child(sleep_long, big_texts(), waiting=waiting)
    assert time.monotonic() - start < 10  # the child would sleep 120 s
    assert seen and gone(seen)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not LINUX, reason="finds the child process through /proc")
def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    script = (
        "import sys; sys.path[:0] = sys.argv[1:]; import test_interrupt as t; from toklab.segmenters import child; "
        "child.run_in_child(t.sleep_long, t.big_texts(), in_process_below=0)"
    )
    here = Path(__file__).parent
    parent = subprocess.Popen([sys.executable, "-c", script, str(here), str(here.parent)], env=dict(os.environ, TMPDIR=str(tmp_path)))
    try:
        assert wait_until(lambda: children_of(parent.pid), 30), "no child started"
        kids = children_of(parent.pid)
        parent.kill()  # no chance to clean up: the child must notice by itself
        parent.wait()
        assert gone(kids, 5), f"child {kids} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_function_another_process_cannot_load_runs_here(spy: list[int]) -> None:
    texts = big_texts()
    assert child.run_in_child(lambda ts: sum(1 for _ in ts), texts, in_process_below=0) == len(texts)
    assert spy == []

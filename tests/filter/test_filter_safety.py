"""`toklab filter` never loses what a user owns: outputs outside the input, --overwrite and report
folders that only replace toolkit-written files, one run per output folder, failures that leave no
temporaries, workers that die with their parent, and clear errors for impossible thresholds."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import toklab.corpus.writers as shard_files
import toklab.filter as filter_module
from toklab.errors import ToklabError
from toklab.filter import filter_corpus, rejected_folder

from cli_helpers import cli_error, cli_ok, run_cli

STATE = filter_module.STATE_FILE


# --- helpers ----------------------------------------------------------------------------------------


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (the state file aside) and a hash of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != STATE
    }


def temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*.tmp")]


def write_docs(path: Path, n: int, seed: int = 0, size: int = 1) -> Path:
    """`n` documents, alternately repetitive (zstd ratio well under 0.5) and varied (over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        if i % 2:
            text = ("abc " * (30 + i)) * size
        else:
            text = " ".join(hashlib.sha256(f"{seed}-{i}-{k}".encode()).hexdigest()[: 3 + k % 7] for k in range(20 * size))
        lines.append(json.dumps({"id": f"{seed}-{i}", "text": text}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # default report folders (reports/...) land here


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """A folder with one .jsonl of a few dozen documents."""
    write_docs(tmp_path / "data" / "docs.jsonl", 36)
    return tmp_path / "data"


@pytest.fixture()
def shards(tmp_path: Path) -> Path:
    """A folder of four .jsonl shards."""
    for s in range(4):
        write_docs(tmp_path / "shards" / f"part-{s}.jsonl", 30, seed=s)
    return tmp_path / "shards"


def zstd_args(corpus: Path, *more: str) -> list[str]:
    return ["filter", "-c", str(corpus), "--by", "zstd", *more]


# A CLI run whose every shard first sleeps (sys.argv[1] seconds), so it can be watched mid-run.
SLOW_RUN = """
import sys, time
import toklab.filter as f
real = f.filter_shard
def slow(*args, **kwargs):
    time.sleep(float(sys.argv[1]))
    return real(*args, **kwargs)
f.filter_shard = slow
from toklab.cli import main
main(sys.argv[2:])
"""


def start_slow_run(seconds: float, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(seconds), *[str(a) for a in args]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, child: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert child.poll() is None, f"the run ended early (exit code {child.returncode})"
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def parent_of(pid: int) -> int | None:
    """The parent pid of a live (not zombie) process, from /proc; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[1])


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


# --- 1. --overwrite removes only what an earlier run wrote -----------------------------------------------------


def test_overwrite_never_removes_a_users_files_in_out_or_the_rejected_folder(data, tmp_path, capsys):
    out = tmp_path / "out"
    cli_ok(capsys, *zstd_args(data, "--out", out))
    first = tree(out)
    mine = tmp_path / "out-rejected"
    mine.mkdir()
    (mine / "mine.txt").write_text("x")
    line = cli_error(capsys, *zstd_args(data, "--out", out, "--keep-rejected", "--overwrite"))
    assert "out-rejected" in line and "not empty" in line
    assert (mine / "mine.txt").read_text() == "x" and sorted(p.name for p in mine.iterdir()) == ["mine.txt"]
    assert tree(out) == first  # refused before anything was removed

    (mine / "mine.txt").unlink()  # the test's own file
    cli_ok(capsys, *zstd_args(data, "--out", out, "--keep-rejected", "--overwrite"))
    assert (mine / "docs.jsonl.zst").is_file()
    # a user's file added to either folder later: --overwrite refuses and removes nothing
    (mine / "later.txt").write_text("later")
    before, before_rejected = tree(out), tree(mine)
    line = cli_error(capsys, *zstd_args(data, "--out", out, "--keep-rejected", "--overwrite"))
    assert "out-rejected" in line and "later.txt" in line
    assert tree(mine) == before_rejected and tree(out) == before
    (mine / "later.txt").unlink()
    (out / "notes.txt").write_text("notes")
    line = cli_error(capsys, *zstd_args(data, "--out", out, "--overwrite", "--t", "0.4"))
    assert "notes.txt" in line
    assert (out / "notes.txt").read_text() == "notes" and tree(out) == {**before, "notes.txt": tree(out)["notes.txt"]}
    (out / "notes.txt").unlink()
    # an --overwrite without --keep-rejected removes the earlier run's rejected shards, and only them
    (mine / "sub").mkdir()
    cli_ok(capsys, *zstd_args(data, "--out", out, "--overwrite"))
    assert not (mine / "docs.jsonl.zst").exists() and (mine / "sub").is_dir()


# --- 2. one rule for every output: never inside the input ------------------------------------------------------


def test_outputs_inside_a_glob_input_or_the_report_inside_the_input_are_refused(tmp_path, capsys):
    g = tmp_path / "g"
    write_docs(g / "a.jsonl", 8)
    write_docs(g / "b.jsonl", 8, seed=1)
    before = tree(g)
    line = cli_error(capsys, *zstd_args(f"{g}/*.jsonl", "--out", g / "filtered"))
    assert "inside the input" in line and str(g / "filtered") in line
    with pytest.raises(ToklabError, match="inside the input"):
        filter_corpus(f"{g}/*.jsonl", g / "filtered", by="zstd")
    # the rejected folder is an output too
    mine = tmp_path / "x-rejected"
    write_docs(mine / "c.jsonl", 4)
    line = cli_error(capsys, *zstd_args(mine, "--out", tmp_path / "x", "--keep-rejected"))
    assert "--keep-rejected folder" in line and "the input" in line
    # and so is the report folder
    line = cli_error(capsys, *zstd_args(f"{g}/*.jsonl", "--dry-run", "--report", g / "rep"))
    assert "--report" in line and "inside the input" in line
    line = cli_error(capsys, *zstd_args(g / "a.jsonl", "--out", tmp_path / "o", "--report", g))
    assert "--report" in line and "input" in line
    assert tree(g) == before and sorted(p.name for p in g.iterdir()) == ["a.jsonl", "b.jsonl"]
    assert tree(mine) == {"c.jsonl": tree(mine)["c.jsonl"]} and not (tmp_path / "x").exists()


# --- 3. a report folder keeps every file toklab did not write --------------------------------------------------


def test_rewriting_a_report_folder_keeps_the_users_files(data, tmp_path, capsys):
    rep = tmp_path / "rep"
    cli_ok(capsys, *zstd_args(data, "--dry-run", "--sweep", "0.4,0.5", "--report", rep))
    assert (rep / "sweep.csv").is_file()
    (rep / "NOTES.txt").write_text("notes")
    (rep / "figures").mkdir()
    (rep / "figures" / "mine.png").write_bytes(b"png")
    cli_ok(capsys, *zstd_args(data, "--dry-run", "--t", "0.45", "--report", rep))
    assert (rep / "NOTES.txt").read_text() == "notes" and (rep / "figures" / "mine.png").read_bytes() == b"png"
    assert json.loads((rep / "summary.json").read_text())["threshold"] == 0.45
    assert not (rep / "sweep.csv").exists()  # the earlier run's own file, which this run does not write
    out = tmp_path / "out"
    cli_ok(capsys, *zstd_args(data, "--out", out, "--report", rep))
    cli_ok(capsys, *zstd_args(data, "--out", out, "--overwrite", "--t", "0.4", "--report", rep))
    assert (rep / "NOTES.txt").read_text() == "notes"
    assert sorted(p.name for p in rep.iterdir()) == ["NOTES.txt", "figures", "per_source.csv", "ratio_histogram.png", "report.md", "summary.json"]
    # a folder that is not a filter report is refused, its files untouched
    for name, content in (("report.md", "my report"), ("summary.json", '{"mine": 1}')):
        other = tmp_path / f"other-{name}"
        other.mkdir()
        (other / name).write_text(content)
        line = cli_error(capsys, *zstd_args(data, "--dry-run", "--report", other))
        assert "holds no toklab filter report" in line
        assert [p.name for p in other.iterdir()] == [name] and (other / name).read_text() == content


# --- 4. one run per output folder ------------------------------------------------------------------------------


def test_a_second_run_on_a_busy_out_is_refused_and_a_stale_lock_is_taken_over(data, tmp_path, capsys):
    out = tmp_path / "out"
    cli_ok(capsys, *zstd_args(data, "--out", tmp_path / "whole", "--report", tmp_path / "r0"))
    child = start_slow_run(60, *zstd_args(data, "--out", out, "--workers", "1", "--report", tmp_path / "r1"))
    try:
        wait_for(lambda: (out / STATE).is_file(), child)
        for flags in ([], ["--resume"], ["--overwrite"]):
            line = cli_error(capsys, *zstd_args(data, "--out", out, *flags, "--report", tmp_path / "r2"))
            assert f"--out {out} is in use by process {child.pid}" in line
        with pytest.raises(ToklabError, match=f"in use by process {child.pid}"):
            filter_corpus(str(data), out, by="zstd", resume=True)
        assert child.poll() is None  # the first run goes on, untouched
    finally:
        child.kill()
        child.wait()
    # the killed run's lock is stale: the next run takes it over, finishes, and lets go of it
    result = filter_corpus(str(data), out, by="zstd", resume=True)
    assert result.conserved and tree(out) == tree(tmp_path / "whole")
    assert sorted(p.name for p in out.iterdir()) == sorted(["docs.jsonl.zst", STATE])
    # a lock file left by a process that is gone (here: a pid that is no longer running)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (out / filter_module.LOCK_FILE).write_text(gone + "\n")
    filter_corpus(str(data), out, by="zstd", overwrite=True)
    assert not (out / filter_module.LOCK_FILE).exists()


def test_the_lock_is_released_when_a_run_fails(data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ToklabError, match="--by must be one of"):
        filter_corpus(str(data), out, by="nope")
    with pytest.raises(ToklabError, match="--segmenter applies to --by tokens only"):
        filter_corpus(str(data), out, by="zstd", segmenter="bytes")
    assert not out.exists()  # a folder the failed run created and left empty is not left behind
    filter_corpus(str(data), out, by="zstd")
    with pytest.raises(ToklabError, match="pass --resume"):
        filter_corpus(str(data), out, by="zstd")
    assert not (out / filter_module.LOCK_FILE).exists()
    filter_corpus(str(data), out, by="zstd", overwrite=True)


# --- 5. failures leave no temporaries, and say what could not be written -----------------------------------


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, f) -> None:
        self._f = f

    def write(self, data) -> int:
        self._f.write(bytes(data)[:10])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_a_full_disk_while_writing_a_shard_is_one_line_and_leaves_no_temporaries(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    filter_corpus(str(data), tmp_path / "whole", by="zstd", keep_rejected=True)
    real_open = open

    def full_disk_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _FullDisk(f) if "w" in mode and ".jsonl.zst" in str(path) else f

    with monkeypatch.context() as patch:
        patch.setattr(shard_files, "open", full_disk_open, raising=False)  # ShardFile opens .jsonl.zst shards
        with pytest.raises(ToklabError) as err:
            filter_corpus(str(data), out, by="zstd", keep_rejected=True, workers=1)
        assert str(err.value) in (f"cannot write {out / 'docs.jsonl.zst'}: No space left on device", f"cannot write {rejected_folder(out) / 'docs.jsonl.zst'}: No space left on device")
        assert temporaries(out, rejected_folder(out)) == []
        assert not (out / filter_module.LOCK_FILE).exists()
        line = cli_error(capsys, *zstd_args(data, "--out", tmp_path / "cli", "--workers", "1"))
        assert line == f"error: cannot write {tmp_path / 'cli' / 'docs.jsonl.zst'}: No space left on device"
    result = filter_corpus(str(data), out, by="zstd", keep_rejected=True, resume=True)
    assert result.conserved and tree(out) == tree(tmp_path / "whole")
    assert tree(rejected_folder(out)) == tree(rejected_folder(tmp_path / "whole"))


def test_a_state_file_that_cannot_be_written_is_one_line_and_leaves_no_temporaries(data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_replace = os.replace

    def full_disk_replace(src, dst):
        if Path(dst).name == STATE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", full_disk_replace)
        with pytest.raises(ToklabError) as err:
            filter_corpus(str(data), out, by="zstd")
    assert str(err.value) == f"cannot write {out / STATE}: No space left on device"
    assert temporaries(out) == []
    filter_corpus(str(data), out, by="zstd")  # nothing in the way


def test_temporaries_a_killed_run_left_are_removed_at_the_next_start(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f".{STATE}.99999.tmp").write_text('{"version": 1, "do')  # killed while writing its first state
    result = filter_corpus(str(data), out, by="zstd")
    assert result.conserved and sorted(p.name for p in out.iterdir()) == sorted(["docs.jsonl.zst", STATE])
    (out / ".docs.jsonl.zst.99999.tmp").write_bytes(b"half a shard")
    (out / ".mine.99999.tmp").write_bytes(b"a user's file that only looks like a temporary")
    filter_corpus(str(data), out, by="zstd", resume=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([".mine.99999.tmp", "docs.jsonl.zst", STATE])


def test_an_out_that_cannot_be_created_is_one_line(data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ToklabError, match=f"cannot write {blocker / 'out'}: "):
        filter_corpus(str(data), blocker / "out", by="zstd")
    line = cli_error(capsys, *zstd_args(data, "--out", blocker / "out"))
    assert line.startswith(f"error: cannot write {blocker / 'out'}: ")
    assert blocker.read_text() == "a file where a folder should be"


# --- 6. workers die with their parent ----------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_workers_exit_when_the_parent_is_killed(shards, tmp_path):
    out = tmp_path / "out"
    child = start_slow_run(60, *zstd_args(shards, "--out", out, "--workers", "2", "--report", tmp_path / "r"))
    workers: list[int] = []
    try:
        wait_for(lambda: (out / STATE).is_file() and len(children_of(child.pid)) >= 2, child)
        workers = children_of(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(parent_of(w) is not None for w in workers):
            time.sleep(0.05)
        assert [w for w in workers if parent_of(w) is not None] == [], "orphaned workers are still running"
    finally:
        child.kill()
        child.wait()
        for w in workers:  # the test's own processes, should the check have failed
            if parent_of(w) is not None:
                os.kill(w, signal.SIGKILL)
    result = filter_corpus(str(shards), out, by="zstd", resume=True)
    assert result.conserved and len(tree(out)) == 4 and temporaries(out) == []


# --- 7. thresholds --------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--t", "inf"], ["--t", "nan"], ["--t", "-inf"], ["--t", "-0.5"], ["--sweep", "inf"], ["--sweep", "0.3,nan"], ["--sweep", "0.3,-1"]])
def test_a_non_finite_or_non_positive_threshold_is_a_user_error(data, capsys, args):
    line = cli_error(capsys, *zstd_args(data, "--dry-run", *args))
    assert args[0] in line and ("positive" in line or "finite" in line)


@pytest.mark.parametrize("options", [{"threshold": float("inf")}, {"threshold": float("nan")}, {"threshold": "abc"}, {"sweep": [0.3, float("inf")]}, {"sweep": [float("nan")]}])
def test_the_python_api_checks_thresholds_too(data, options):
    with pytest.raises(ToklabError, match="positive"):
        filter_corpus(str(data), by="zstd", dry_run=True, **options)


# --- 8. a damaged state file ----------------------------------------------------------------------------


def test_a_damaged_state_file_is_recovered_by_overwrite(data, tmp_path, capsys):
    out = tmp_path / "out"
    filter_corpus(str(data), tmp_path / "whole", by="zstd")
    filter_corpus(str(data), out, by="zstd", threshold=0.3)
    text = (out / STATE).read_text()
    (out / STATE).write_text(text[: len(text) // 2])  # cut off, as by a full disk
    for flags in (["--resume"], []):
        line = cli_error(capsys, *zstd_args(data, "--out", out, *flags))
        assert "damaged" in line and "--overwrite" in line
    result = filter_corpus(str(data), out, by="zstd", overwrite=True)
    assert result.conserved and tree(out) == tree(tmp_path / "whole")
    # a damaged state does not make a user's files fair game
    (out / STATE).write_text("{")
    (out / "notes.txt").write_text("notes")
    line = cli_error(capsys, *zstd_args(data, "--out", out, "--overwrite"))
    assert "notes.txt" in line and (out / "notes.txt").read_text() == "notes"


# --- 9. the default tokeniser's training sample ---------------------------------------------------------


def test_the_default_filter_trains_on_a_document_larger_than_train_bytes(tmp_path, capsys):
    big = tmp_path / "big"
    write_docs(big / "docs.jsonl", 6, size=4)  # every document is over 400 bytes
    code, _, err = run_cli(capsys, "filter", "-c", big, "--dry-run", "--train-bytes", "100", "--report", tmp_path / "rep")
    assert code == 0, err
    notes = json.loads((tmp_path / "rep" / "summary.json").read_text())["notes"]
    assert any("--train-bytes" in n and "one document" in n for n in notes), notes
    assert "note:" in err and "--train-bytes" in err
    sample = filter_module.training_sample(filter_module.open_corpus(str(big)), 100)
    docs = list(sample.documents())
    assert len(docs) == 1 and docs[0].n_bytes > 100


# --- 10. an interrupt (Ctrl-C) stops the workers and leaves a resumable folder -------------------------


def test_an_interrupt_in_a_parallel_run_stops_its_workers_and_the_run_resumes_byte_identically(shards, tmp_path, monkeypatch):
    filter_corpus(str(shards), tmp_path / "whole", by="zstd", keep_rejected=True, workers=1)
    out = tmp_path / "out"
    real_write_state, real_filter_shard = filter_module._write_state, filter_module.filter_shard

    def interrupted_at_the_first_result(folder, state):
        if len(state["done"]) == 1:
            raise KeyboardInterrupt
        real_write_state(folder, state)

    def slow(*args, **kwargs):  # the workers are forked after this patch, so they run it too
        time.sleep(1.0)
        return real_filter_shard(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(filter_module, "_write_state", interrupted_at_the_first_result)
        patch.setattr(filter_module, "filter_shard", slow)
        with pytest.raises(KeyboardInterrupt):
            filter_corpus(str(shards), out, by="zstd", keep_rejected=True, workers=2)
    assert len(tree(out)) <= 3, "the workers went on with the queued shards after the interrupt"
    assert temporaries(out, rejected_folder(out)) == [] and not (out / filter_module.LOCK_FILE).exists()
    if Path("/proc/self/stat").is_file():
        assert children_of(os.getpid()) == []
    state = json.loads((out / STATE).read_text())
    assert state["done"] == {} and not state["complete"]
    result = filter_corpus(str(shards), out, by="zstd", keep_rejected=True, resume=True, workers=2)
    assert result.conserved and tree(out) == tree(tmp_path / "whole")
    assert tree(rejected_folder(out)) == tree(rejected_folder(tmp_path / "whole"))

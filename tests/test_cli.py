"""The command line: --version, --help on every command, and the corpus commands' output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import toklab
from toklab.cli import CORPUS_PARAMETERS, main


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"toklab {toklab.__version__}"


def test_console_script_and_module_entry_points():
    result = subprocess.run([sys.executable, "-m", "toklab", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"toklab {toklab.__version__}"


@pytest.mark.parametrize("command", [[], ["corpus"], ["corpus", "info"], ["corpus", "sample"], ["corpus", "build"], ["corpus", "list"]])
def test_help_explains_every_option(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "Usage:" in out
    if command in (["corpus", "info"], ["corpus", "sample"]):
        for name, *_ in CORPUS_PARAMETERS:
            assert "--" + name.replace("_", "-") in out
    assert out.count("─") > 0  # rendered by rich


def test_every_option_has_help_text():
    import typer.main

    group = typer.main.get_command(toklab.cli.app)
    for name, sub in group.commands["corpus"].commands.items():
        for param in sub.params:
            if param.param_type_name == "option":
                assert param.help, f"corpus {name} {param.opts} has no help"


def test_corpus_info_on_a_jsonl(capsys, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"id": str(i), "text": "ab" * (i + 1), "source": "s" + str(i % 2)}) for i in range(10)) + "\n")
    code, out, err = run(capsys, "corpus", "info", "--corpus", str(path))
    assert code == 0
    # By hand: document i is "ab" x (i + 1), 2 (i + 1) bytes and chars, source s(i % 2); s0 holds
    # 2 + 6 + 10 + 14 + 18 = 50 bytes, s1 4 + 8 + 12 + 16 + 20 = 60. Ids "4" and "8" (both s0) are
    # the val documents at 0.1 and at 0.5: blake2b("toklab-split\0<id>") / 2**64 is 0.097 and 0.045
    # for them, 0.6 or more for the other eight.
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "documents 10 (train 8, val 2)" in lines
    assert "bytes 110 (0.00 MB)" in lines and "characters 110" in lines
    assert "mean length 11 bytes" in lines and "max length 20 bytes (9)" in lines
    # per source, largest first: docs, MB, mean B, max B, val, share
    assert [line for line in lines if line.startswith(("s0 ", "s1 "))] == ["s1 5 0.00 12 20 0 54.5%", "s0 5 0.00 10 18 2 45.5%"]
    code, out, _ = run(capsys, "corpus", "info", "--corpus", str(path), "--json", "--val-fraction", "0.5")
    data = json.loads(out)
    assert (data["documents"], data["bytes"], data["chars"]) == (10, 110, 110)
    assert (data["train_documents"], data["val_documents"]) == (8, 2)
    assert (data["max_bytes"], data["max_doc_id"]) == (20, "9")
    rows = {row["source"]: (row["documents"], row["bytes"], row["chars"], row["max_bytes"], row["val_documents"]) for row in data["per_source"]}
    assert rows == {"s0": (5, 50, 50, 18, 2), "s1": (5, 60, 60, 20, 0)}


def test_corpus_info_notes_what_it_skipped(capsys, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\nnot json\n{"text": ""}\n')
    code, out, err = run(capsys, "corpus", "info", "-c", str(path))
    assert code == 0
    assert "1 empty document skipped" in err
    assert f"1 malformed line skipped (at {path}:2)" in err.replace("\n", "")


def test_corpus_sample_picks_documents_deterministically(capsys, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"d{i}", "text": f"text number {i}"}) for i in range(50)) + "\n")
    code, first, _ = run(capsys, "corpus", "sample", "-c", str(path), "-n", "3")
    assert code == 0 and first.count("text number") == 3
    _, again, _ = run(capsys, "corpus", "sample", "-c", str(path), "-n", "3")
    assert again == first
    _, other, _ = run(capsys, "corpus", "sample", "-c", str(path), "-n", "3", "--pick-seed", "7")
    assert other != first
    _, val, _ = run(capsys, "corpus", "sample", "-c", str(path), "-n", "50", "--part", "val")
    val_ids = {f"d{i}" for i in range(50) if toklab.split_of(f"d{i}", 0.1) == "val"}
    assert {line.split()[1] for line in val.splitlines() if line.startswith("─")} == val_ids


def test_corpus_sample_errors(capsys, tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("x")
    code, _, err = run(capsys, "corpus", "sample", "-c", str(path), "--part", "test")
    assert code == 2 and "--part must be all, train or val" in err


def test_corpus_build_and_list(capsys, default_corpus_build):
    code, out, _ = run(capsys, "corpus", "build")
    assert code == 0 and "up to date" in out and f"{default_corpus_build.documents:,} documents" in out
    code, out, _ = run(capsys, "corpus", "list")
    assert code == 0 and "default" in out
    code, _, err = run(capsys, "corpus", "build", "nosuch")
    assert code == 2 and "no recipe named 'nosuch'" in err

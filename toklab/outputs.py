"""One home for the output-folder policy every command follows.

- A new or empty folder starts a new run.
- A folder that holds an earlier run of the same command is continued (`--resume`, or by itself
  where the command resumes on its own, as a study does), replaced (`--overwrite`: only the files
  that command writes go), or refused with one line that says which flag to pass.
- A folder that holds anything else is never touched.

Commands read their own settings file (run.json, study.json, the filter state) and hand what
they found to `plan_output`; they keep the knowledge of which files are theirs.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toklab.errors import ToklabError
from toklab.files import changed_settings, check_folder


class Plan(enum.Enum):
    NEW = "new"  # nothing there: start
    CONTINUE = "continue"  # the same run: carry on from where it stopped
    REPLACE = "replace"  # --overwrite: remove the earlier run's own files, then start


@dataclass(frozen=True)
class OutputPolicy:
    what: str  # what the folder holds, for messages: "run", "study", "filter run"
    option: str = "--out"
    resumable: bool = False  # the command has --resume
    continues_same: bool = False  # the same settings continue without --resume (a study)


def is_empty(folder: str | os.PathLike) -> bool:
    """Whether `folder` is missing or has nothing in it."""
    folder = Path(folder)
    return not folder.exists() or not any(folder.iterdir())


def foreign(folder: str | os.PathLike, what: str, option: str = "--out") -> ToklabError:
    """The refusal for a folder that holds something other than toklab's `what`."""
    return ToklabError(f"{option} {folder} is not empty and holds no toklab {what}; choose a new or empty folder")


def replaced_note(folder: str | os.PathLike, what: str) -> str:
    return f"replaced the earlier {what} in {folder} (--overwrite)"


def plan_output(
    folder: Path,
    policy: OutputPolicy,
    *,
    previous: dict[str, Any] | None,
    settings: dict[str, Any] | None,
    resume: bool = False,
    overwrite: bool = False,
    damaged: str | None = None,
    state: str = "",
    empty: bool | None = None,
) -> Plan:
    """What to do with `folder`, or a one-line ToklabError. Changes nothing.

    `previous` is the settings an earlier run left there (None when there is none), `damaged` why
    its settings file could not be read (None when it was read or is absent), `settings` this run's
    (None: compared later by the caller), `state` a few words on the earlier run ("complete", "an
    interrupted …") for the refusal, and `empty` the caller's own emptiness test (files of its own
    that do not count, such as a lock)."""
    what, option = policy.what, policy.option
    check_folder(folder, option)
    if is_empty(folder) if empty is None else empty:
        if resume:
            raise ToklabError(f"--resume: {folder} holds no {what} to continue; leave out --resume to start one")
        return Plan.NEW
    if previous is None:
        if damaged is None:
            raise foreign(folder, what, option)
        if overwrite:
            return Plan.REPLACE
        raise ToklabError(f"{option} {folder} holds a damaged {what} ({damaged}); pass --overwrite to start again")
    if overwrite:
        return Plan.REPLACE
    changed = changed_settings(previous, settings) if settings is not None else []
    differ = f" ({', '.join(changed)} differ)" if changed else ""
    if resume:
        if changed:
            raise ToklabError(f"--resume: the {what} in {folder} was started with other settings{differ}; resume with the same arguments, or pass --overwrite to start again")
        return Plan.CONTINUE
    if policy.continues_same and not changed:
        return Plan.CONTINUE
    held = f"{state} {what}" if state else f"a {what}"
    if changed:
        held += f" with other settings{differ}"
    ways = (["--resume to continue it"] if policy.resumable and not changed else []) + ["--overwrite to replace it"]
    raise ToklabError(f"{option} {folder} already holds {held}; pass {' or '.join(ways)}, or choose another {option}")


# The file that marks each kind of toklab output folder, in the order `toklab report` tries them (a
# pretrain run also holds a summary.json, so run.json is looked for before filter's summary.json).
FOLDER_MARKERS = (("study", "study.json"), ("compare", "results.json"), ("pretrain", "run.json"), ("filter", "summary.json"))


def folder_kind(folder: str | os.PathLike) -> str | None:
    """compare, filter, pretrain or study by the files the folder holds; None for anything else."""
    folder = Path(folder)
    return next((kind for kind, marker in FOLDER_MARKERS if (folder / marker).is_file()), None)

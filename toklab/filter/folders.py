"""The output folders of a run: --out and the --keep-rejected folder, what may be in them, what
--overwrite removes (only an earlier filter run's own files), and the temporaries a killed run left."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from toklab.corpus.corpus import Corpus
from toklab.errors import ToklabError
from toklab.files import check_outside
from toklab.filter.lock import LOCK_FILE
from toklab.filter.oserrors import cannot_write, why
from toklab.filter.state import STATE_FILE, STATE_VERSION, load_state, write_state
from toklab.filter.tally import ShardTally
from toklab.outputs import OutputPolicy, Plan, foreign, plan_output

TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp$")  # files.temp_name's pattern
REJECTED_LABEL = "the --keep-rejected folder"
OUTPUT = OutputPolicy("filter run", resumable=True)
# Where a run on another engine (toklab.datatrove) keeps its logs, completion markers, per-shard
# tallies and the saved segmenter: a filter run's own, so --overwrite removes it with the shards.
ENGINE_FOLDER = ".datatrove"


def rejected_folder(out: str | os.PathLike) -> Path:
    """Where --keep-rejected puts rejected documents: a sibling of --out, so --out holds kept ones only."""
    out = Path(out)
    return out.with_name(out.name + "-rejected")


def check_paths(corpus: Corpus, out: Path, rejected: Path | None) -> None:
    """Refuse an output inside the input or holding it (one rule for every command), or a file."""
    roots = corpus.input_roots()
    check_outside(out, roots)
    if rejected is not None:
        check_outside(rejected, roots, REJECTED_LABEL)
    for label, target in (("--out", out), (REJECTED_LABEL, rejected)):
        if target is not None and target.exists() and not target.is_dir():
            raise ToklabError(f"{label} {target} is a file; choose a folder")


def make_folder(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns those it created, deepest first."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(folder, exc) from exc
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


def _entries(folder: Path | None) -> list[str]:
    """Every file (or link) below `folder`, as a relative posix path; folders themselves aside."""
    if folder is None or not folder.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        found += [Path(root, name).relative_to(folder).as_posix() for name in files + links]
    return sorted(found)


def _is_engine(name: str) -> bool:
    return name.split("/", 1)[0] == ENGINE_FOLDER


def _is_temporary(name: str, of: set[str]) -> bool:
    """Whether `name` (relative) is the temporary file toklab writes one of `of` under."""
    path = Path(name)
    match = TEMPORARY.match(path.name)
    return bool(match) and (path.parent / match["name"]).as_posix() in of


class OutputFolders:
    """--out and the rejected folder of one run. `inspect` refuses, before anything is written or
    removed, a folder that holds anything but filter output; `start` then removes only what an
    earlier filter run wrote (with --overwrite) and the temporaries a killed run left."""

    def __init__(self, out: Path, rejected: Path | None, planned: list[str], resume: bool, overwrite: bool) -> None:
        self.out, self.rejected, self.planned = out, rejected, planned
        self.resume, self.overwrite = resume, overwrite
        self.state: dict[str, Any] | None = None
        self.owned = False  # both folders are this run's to write (temporaries in them are its to remove)
        self.ours_out = {STATE_FILE, *planned}  # names whose temporaries toklab wrote
        self.ours_rejected = set(planned)
        self.remove: list[Path] = []  # an earlier run's files, removed by --overwrite
        self.rejected_ours = rejected is not None  # whether rejected_folder(out) is a filter run's
        self.drop_rejected = False  # the earlier run's rejected folder, removed when it ends up empty

    def inspect(self) -> None:
        out, rejected = self.out, self.rejected
        state_file = out / STATE_FILE
        damaged = None
        if state_file.is_file() or state_file.is_symlink():
            self.state, damaged = load_state(state_file)
        earlier_run = self.state is not None or damaged is not None
        # only toklab's own lock and temporaries: as good as empty
        strays = [] if earlier_run else [n for n in _entries(out) if n != LOCK_FILE and not _is_temporary(n, {STATE_FILE})]
        what = ""
        if self.state is not None and not self.state.get("complete"):
            what = f"an interrupted ({len(self.state['done'])} of {len(self.planned)} shards done)"
        elif self.state is not None:
            what = "a complete"
        plan = plan_output(
            out, OUTPUT, previous=self.state["config"] if self.state is not None else None, settings=None,
            resume=self.resume, overwrite=self.overwrite, damaged=damaged and f"{STATE_FILE}: {damaged}", state=what, empty=not earlier_run and not strays,
        )  # fmt: skip
        if plan is Plan.NEW:  # no earlier run: the rejected folder must be empty too
            if _entries(rejected):
                raise foreign(rejected, OUTPUT.what, REJECTED_LABEL)
            self.owned = True
            return
        if self.state is not None:
            state = self.state
            done = state["done"].values()
            earlier = set(state.get("outputs") or [])
            kept = earlier | {o.kept_file for o in done if o.kept_file}
            had_rejected = bool(state["config"].get("keep_rejected"))
            rejected_names = (earlier | {o.rejected_file for o in done if o.rejected_file}) if had_rejected else set()
            if plan is Plan.CONTINUE:
                self.ours_out |= kept
                self.ours_rejected |= rejected_names
                self.rejected_ours = rejected is not None and had_rejected
                self.owned = True
                return  # the settings are compared in start()
        else:  # damaged, and --overwrite: the shards this run writes are the ones it may replace
            kept = set(self.planned)
            had_rejected = rejected is not None
            rejected_names = set(self.planned) if had_rejected else set()
        # --overwrite: the earlier run's own files go, and nothing else may be in the way
        self.ours_out |= kept
        self.ours_rejected |= rejected_names
        old_rejected = rejected_folder(out)
        ours = self.ours_out | {LOCK_FILE}
        out_strays = [n for n in _entries(out) if n not in ours and not _is_temporary(n, self.ours_out) and not _is_engine(n)]
        rejected_strays = [n for n in _entries(old_rejected) if n not in rejected_names and not _is_temporary(n, self.ours_rejected)]
        if out_strays:
            self._refuse_strays("--out", out, out_strays, damaged)
        if rejected_strays and rejected is not None:
            self._refuse_strays(REJECTED_LABEL, rejected, rejected_strays, damaged)
        self.remove = [out / n for n in _entries(out) if n in kept or n == STATE_FILE or _is_engine(n)]
        self.remove += [old_rejected / n for n in _entries(old_rejected) if n in rejected_names]
        self.drop_rejected = had_rejected and rejected is None
        self.rejected_ours = had_rejected or rejected is not None
        self.owned = True

    def _refuse_strays(self, label: str, folder: Path, strays: list[str], damaged: str | None) -> None:
        more = f" and {len(strays) - 1} more" if len(strays) > 1 else ""
        which = "the earlier filter run (its state file is damaged) did not write" if damaged else "no filter run wrote"
        raise ToklabError(
            f"{label} {folder} is not empty: it holds {strays[0]}{more}, which {which}; "
            "--overwrite only replaces a filter run's own output, so move them away or choose another --out"
        )

    def start(self, config: dict[str, Any]) -> dict[str, Any]:
        """The run's state: an earlier run's, to resume, or a fresh one (after --overwrite's removals)."""
        state = self.state
        if state is not None and not self.overwrite:  # --resume
            plan_output(self.out, OUTPUT, previous=state["config"], settings=config, resume=True, empty=False)  # the same settings, or a refusal
            state["done"] = {k: v for k, v in state["done"].items() if _outputs_intact(self.out, self.rejected, v)}
            state["outputs"] = sorted(set(state.get("outputs") or []) | set(self.planned))
        else:
            for path in self.remove:
                _remove_file(path, stop=self.out if path.is_relative_to(self.out) else rejected_folder(self.out))
            if self.drop_rejected:
                remove_if_empty([rejected_folder(self.out)])
            state = {"version": STATE_VERSION, "config": config, "outputs": list(self.planned), "done": {}, "complete": False}
        self.remove_temporaries()
        if self.rejected is not None:
            make_folder(self.rejected)
        write_state(self.out, state)
        return state

    def remove_temporaries(self) -> None:
        """The temporary files of the shards and state toklab writes here (a killed run's, or a failed one's)."""
        if not self.owned:
            return
        folders = [(self.out, self.ours_out)] + ([(rejected_folder(self.out), self.ours_rejected)] if self.rejected_ours else [])
        for folder, names in folders:
            for name in _entries(folder):
                if _is_temporary(name, names):
                    _remove_file(folder / name, stop=folder, quiet=True)


def _remove_file(path: Path, stop: Path, quiet: bool = False) -> None:
    """Remove a file toklab wrote, then the folders it leaves empty, up to `stop` (kept)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        if quiet:
            return
        raise ToklabError(f"cannot remove {path}: {why(exc)}") from exc
    parent = path.parent
    while parent != stop and parent.is_relative_to(stop):
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def _outputs_intact(out: Path, rejected: Path | None, tally: ShardTally) -> bool:
    """Whether a done shard's output files are still there, at the sizes it recorded."""
    for folder, name, size in ((out, tally.kept_file, tally.kept_file_bytes), (rejected, tally.rejected_file, tally.rejected_file_bytes)):
        if folder is not None and name is not None and not ((folder / name).is_file() and (folder / name).stat().st_size == size):
            return False
    return True

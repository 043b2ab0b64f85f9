"""The resume state file in --out: which shards are done (their ShardTally), read and written whole."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from toklab.errors import ToklabError
from toklab.files import temp_name
from toklab.filter.oserrors import cannot_write, why
from toklab.filter.tally import REQUIRED_KEYS, ShardTally

STATE_FILE = ".toklab-filter.json"
STATE_VERSION = 1

# In memory a state is the file's JSON object, except that "done" maps a shard's index (a string)
# to its ShardTally rather than to a plain dict.


def load_state(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the state, None), or (None, why it is damaged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except ValueError:
        return None, "not text"
    except OSError as exc:
        raise ToklabError(f"cannot read {path}: {why(exc)}") from exc
    try:
        state = json.loads(text)
    except ValueError:
        return None, "cut off or not JSON"
    if not isinstance(state, dict):
        return None, "not a JSON object"
    if state.get("version") != STATE_VERSION:
        return None, f"version {state.get('version')!r}, not {STATE_VERSION}"
    done, outputs = state.get("done"), state.get("outputs", [])
    if not isinstance(state.get("config"), dict) or not isinstance(done, dict) or not isinstance(outputs, list):
        return None, "incomplete"
    if not all(isinstance(o, dict) and REQUIRED_KEYS <= o.keys() for o in done.values()) or not all(isinstance(n, str) for n in outputs):
        return None, "incomplete"
    state["done"] = {k: ShardTally.from_json(v) for k, v in done.items()}
    return state, None


def write_state(out: Path, state: dict[str, Any]) -> None:
    """Write the state under a temporary name, then rename it into place (never half a file)."""
    path = out / STATE_FILE
    tmp = temp_name(path)
    on_disk = {**state, "done": {k: v.to_json() for k, v in state["done"].items()}}
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(on_disk, indent=1, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise cannot_write(path, exc) from exc

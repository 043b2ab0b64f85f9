"""Checking the `key=value` options of a segmenter spec: every value typed and within its bounds
when the spec is parsed, before any training, with a one-line message naming the option and
the allowed range. Every kind checks its options with these helpers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from toklab.errors import ToklabError

MAX_VOCAB_SIZE = 2**22  # ids every kind's library handles; far beyond any useful tokeniser
MAX_BYTES = 2**40  # a byte count no corpus option needs more of
WHOLE = re.compile(r"^([+-]?\d+(?:\.\d+)?)([km]?)$", re.IGNORECASE)
BYTE_SIZE = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*(|k|m|g|kib|mib|gib)$", re.IGNORECASE)
BYTE_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "kib": 2**10, "mib": 2**20, "gib": 2**30}
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 2**53 else f"{x:g}"


def _bytes(n: float) -> str:
    """A byte count in the largest binary unit that divides it: 1 TiB, 110 KiB, 300 B."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{int(n) // size:,} {unit}"
    return f"{int(n):,} B"


def _range(low: float, high: float) -> str:
    return f"between {_num(low)} and {_num(high)}"


def check_unknown(kind: str, options: dict[str, Any], valid: Iterable[str]) -> None:
    valid = sorted(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ToklabError(f"unknown {kind} option(s) {', '.join(unknown)} (valid: {', '.join(valid) or 'none'})")


def _scaled(number: str, multiplier: int) -> int | None:
    """`number` (decimal digits, maybe a fraction) times `multiplier`, when that is whole (exactly,
    however many digits)."""
    scaled = Decimal(number) * multiplier
    return int(scaled) if scaled == scaled.to_integral_value() else None


def whole(kind: str, key: str, value: Any, low: int, high: int) -> int:
    """A whole number (`8k` = 8000, `1m` = 1000000) in [low, high]."""
    text = str(value).strip().replace("_", "")
    match = WHOLE.match(text)
    number = _scaled(match.group(1), {"": 1, "k": 1000, "m": 1_000_000}[match.group(2).lower()]) if match else None
    if number is None:
        raise ToklabError(f"{kind} option {key}={value} is not a whole number (allowed: {_range(low, high)})")
    if not low <= number <= high:
        raise ToklabError(f"{kind} option {key}={value} must be a whole number {_range(low, high)}")
    return number


def byte_size(kind: str, key: str, value: Any, low: int, high: int = MAX_BYTES) -> int:
    """A number of bytes (`110kib`, `64m` = 64,000,000, `8mib`) in [low, high]."""
    match = BYTE_SIZE.match(str(value).strip().replace("_", ""))
    number = _scaled(match.group(1), BYTE_UNITS[match.group(2).lower()]) if match else None
    if number is None or not low <= number <= high:
        raise ToklabError(f"{kind} option {key}={value} must be a number of bytes {_range(low, high)} (e.g. 110kib, 64m)")
    return number


def real(kind: str, key: str, value: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False) -> float:
    """A finite number in [low, high] (or (low, high] with `low_open`)."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        bounds = []
        if low > -math.inf:
            bounds.append(f"{'above' if low_open else 'at least'} {_num(low)}")
        if high < math.inf:
            bounds.append(f"at most {_num(high)}")
        where = f" ({' and '.join(bounds)})" if bounds else ""
        raise ToklabError(f"{kind} option {key}={value} must be a finite number{where}")
    return number


def boolean(kind: str, key: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ToklabError(f"{kind} option {key}={value} must be true or false (1/0, yes/no, on/off)")


def choice(kind: str, key: str, value: Any, choices: Iterable[str], what: str = "") -> str:
    choices = list(choices)
    text = str(value).strip()
    if text not in choices:
        raise ToklabError(f"unknown {what or kind + ' ' + key} '{value}' (use {', '.join(choices)})")
    return text


def vocab_size_range(kind: str, size: int, low: int, high: int = MAX_VOCAB_SIZE, why: str = "") -> int:
    if not low <= size <= high:
        because = f" ({why})" if why else ""
        shown = f"{size:,}" if size <= 10**15 else f"more than {10**15:,}"
        raise ToklabError(f"{kind} vocabulary size must be at least {low:,}{because} and at most {high:,}; got {shown}")
    return size


# --- describing options and kinds ------------------------------------------------------------------

OPTION_TYPES = ("whole", "real", "bytes", "bool", "choice", "text")


@dataclass(frozen=True)
class Option:
    """One `key=value` option of a segmenter kind: its type, default and bounds. Each kind declares
    its options with these (`Segmenter.option_info`) and checks values through `check`, so what
    `toklab segmenters` shows is what the checks enforce.

    `default` is what applies when the option is not given (None: nothing, e.g. no limit), written
    as a user would write it (`"8mib"`); `low`/`high` bound whole, real and byte-size values."""

    name: str
    type: str
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    what: str = ""  # how a choice's error message names it (default: "<kind> <name>")
    low_open: bool = False  # real: the value must be above `low`, not equal to it

    def __post_init__(self) -> None:
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option {self.name}: unknown type {self.type!r} (use {', '.join(OPTION_TYPES)})")

    def check(self, kind: str, value: Any) -> Any:
        """`value` (a string from a spec) typed and within bounds; a mistake is a one-line ToklabError."""
        if self.type == "whole":
            return whole(kind, self.name, value, int(self.low if self.low is not None else 0), int(self.high if self.high is not None else MAX_BYTES))
        if self.type == "real":
            low = -math.inf if self.low is None else self.low
            high = math.inf if self.high is None else self.high
            return real(kind, self.name, value, low, high, low_open=self.low_open)
        if self.type == "bytes":
            return byte_size(kind, self.name, value, int(self.low or 0), int(self.high if self.high is not None else MAX_BYTES))
        if self.type == "bool":
            return boolean(kind, self.name, value)
        if self.type == "choice":
            return choice(kind, self.name, value, self.choices, what=self.what)
        return str(value).strip()

    def allowed(self) -> str:
        """The allowed values in short words: '0 to 4,294,967,295', 'global, monotonic, both'."""
        high = self.high if self.high is not None else MAX_BYTES
        if self.type == "whole":
            return f"{_num(self.low or 0)} to {_num(high)}"
        if self.type == "bytes":
            return f"{_bytes(self.low or 0)} to {_bytes(high)}"
        if self.type == "real":
            if self.low is not None and self.high is not None and not self.low_open:
                return f"{_num(self.low)} to {_num(self.high)}"
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
            if self.high is not None:
                bounds.append(f"<= {_num(self.high)}")
            return ", ".join(bounds) if bounds else "any number"
        if self.type == "bool":
            return "true, false"
        if self.type == "choice":
            return ", ".join(self.choices)
        return "text"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "min": self.low,
            "max": self.high,
            "choices": list(self.choices) or None,
            "allowed": self.allowed(),
            "help": self.help,
        }


def option_table(options: "Iterable[Option]") -> dict[str, Option]:
    """Name -> Option, refusing a name declared twice."""
    table: dict[str, Option] = {}
    for option in options:
        if option.name in table:
            raise ValueError(f"option {option.name} is declared twice")
        table[option.name] = option
    return table

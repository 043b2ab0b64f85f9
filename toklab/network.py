"""Network probes shared by the corpus readers and the pretrained segmenters.

Standard library only at import time, so any layer may use it.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

REACH_TIMEOUT_S = 3.0


def reachable(host: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether `host` answers on port 443 within `timeout` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_offline_reason() -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None if it can."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{var} is set"
    try:
        from huggingface_hub import constants  # optional: only its endpoint setting is read

        endpoint = constants.ENDPOINT
    except Exception:
        endpoint = "https://huggingface.co"
    host = urlparse(endpoint).hostname or endpoint
    if not reachable(host):
        return f"cannot reach {host}"
    return None

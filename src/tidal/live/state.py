"""The controller's memory across restarts: the policy's ``state_dict()`` and a few counters.

Written after every decision, atomically (a temporary file in the same folder, fsync, then
``os.replace``), so a crash leaves either the previous state or the new one, never half of it.
A state saved for a different policy block is ignored with a warning: stabilisation history of
one policy means nothing to another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidal.core.errors import TidalInputError

log = logging.getLogger(__name__)

FORMAT = "tidal-controller-state/1"


def policy_fingerprint(block: Mapping[str, Any]) -> str:
    """A short digest of a policy block (key order does not matter)."""
    text = json.dumps(block, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SavedState:
    """What a controller persists: its policy's state and where it left off."""

    fingerprint: str
    time: float
    spec: int | None
    source_failures: int
    policy_state: Mapping[str, Any] = field(default_factory=dict)


class StateStore:
    """Reads and atomically writes one state file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def save(self, state: SavedState) -> None:
        doc = {"format": FORMAT, "fingerprint": state.fingerprint, "time": state.time, "spec": state.spec,
               "source_failures": state.source_failures, "policy_state": state.policy_state}
        text = json.dumps(doc, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, fingerprint: str | None = None) -> SavedState | None:
        """The saved state, ``None`` without a file or (with a warning) for another policy.

        A file that is not a controller state file is bad input, not something to overwrite.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise TidalInputError(f"state_file {self.path}", f"cannot read: {exc}") from None
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT}")
            state = SavedState(
                fingerprint=str(doc["fingerprint"]),
                time=float(doc["time"]),
                spec=None if doc.get("spec") is None else int(doc["spec"]),
                source_failures=int(doc.get("source_failures", 0)),
                policy_state=dict(doc.get("policy_state") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TidalInputError(f"state_file {self.path}", f"not a tidal controller state file ({exc}); "
                                  "move it away to start fresh") from None
        if fingerprint is not None and state.fingerprint != fingerprint:
            log.warning("state file %s was written for another policy configuration; starting fresh", self.path)
            return None
        return state

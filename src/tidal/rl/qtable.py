"""A learned Q table and its file formats (``.npz`` or ``.json``; never pickle).

:class:`QModel` is everything the ``rl`` policy needs to act: the table (one row per discretised
state, one column per action), the actions (replica deltas), the discretizer and the feature
normalisation. Acting is greedy; ties go to the smallest change, an increase before a decrease
(so an untrained, all-zero table holds the current count).

The ``.npz`` file holds two arrays, ``q`` (float64) and ``meta`` (a JSON string), and is read
with ``allow_pickle=False``. The ``.json`` file holds the same metadata with ``q`` as nested
lists. Both carry ``format: tidal-q/1``. This module imports only :mod:`tidal.core`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tidal.core.errors import TidalInputError
from tidal.core.types import Observation
from tidal.rl.features import DEFAULT_DISCRETIZER, Discretizer, FeatureSpec, extract

FORMAT = "tidal-q/1"


@dataclass(frozen=True, eq=False)
class QModel:
    """A Q table over ``discretizer`` states and ``actions`` (replica deltas), acted on greedily.

    Compare models with :meth:`to_dict` (the table is an array, so ``==`` is identity).
    """

    q: np.ndarray
    actions: tuple[int, ...]
    features: FeatureSpec
    discretizer: Discretizer = DEFAULT_DISCRETIZER
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        q = np.array(self.q, dtype=np.float64)  # a private copy: the model is a value
        actions = tuple(int(a) for a in self.actions)
        if not actions or len(set(actions)) != len(actions):
            raise ValueError(f"actions must be distinct replica deltas, got {list(self.actions)}")
        expected = (self.discretizer.n_states, len(actions))
        if q.shape != expected:
            raise ValueError(f"q has shape {q.shape}, expected (states, actions) = {expected}")
        if not np.isfinite(q).all():
            raise ValueError("q holds non-finite values")
        q.flags.writeable = False
        object.__setattr__(self, "q", q)
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "info", dict(self.info))
        object.__setattr__(self, "_preference", np.array(tie_order(actions), dtype=np.int64))

    @classmethod
    def untrained(cls, features: FeatureSpec, max_step: int = 2, discretizer: Discretizer = DEFAULT_DISCRETIZER,
                  ) -> QModel:
        """An all-zero table with actions ``-max_step..+max_step`` (acts as 'hold')."""
        if max_step < 1:
            raise ValueError(f"max_step must be >= 1, got {max_step}")
        actions = tuple(range(-max_step, max_step + 1))
        return cls(np.zeros((discretizer.n_states, len(actions))), actions, features, discretizer)

    # ------------------------------------------------------------------ acting
    def state(self, features: np.ndarray) -> int:
        """Table row of a feature vector."""
        return self.discretizer.index(features)

    def greedy(self, state: int) -> int:
        """Index of the best action in ``state`` (ties: smallest change, up before down)."""
        return greedy_action(self.q[state], self._preference)  # type: ignore[attr-defined]

    def act(self, features: np.ndarray) -> int:
        """Greedy action index for a feature vector."""
        return self.greedy(self.state(features))

    def delta(self, obs: Observation) -> int:
        """The replica change this model makes for ``obs``."""
        return self.actions[self.act(extract(obs, self.features))]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the ``.json`` file's content)."""
        return {"format": FORMAT, **self._meta(), "q": self.q.tolist()}

    def _meta(self) -> dict[str, Any]:
        return {
            "actions": list(self.actions),
            "features": self.features.to_dict(),
            "discretizer": self.discretizer.to_dict(),
            "info": _json_safe(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], q: np.ndarray | None = None) -> QModel:
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        table = np.asarray(data["q"] if q is None else q, dtype=np.float64)
        return cls(table, tuple(data["actions"]), FeatureSpec.from_dict(data["features"]),
                   Discretizer.from_dict(data["discretizer"]), dict(data.get("info", {})))

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (``.npz`` or ``.json``), atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".npz", ".json"):
            raise ValueError(f"{path}: a Q model file must end in .npz or .json")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                if suffix == ".npz":
                    meta = json.dumps({"format": FORMAT, **self._meta()})
                    np.savez(f, q=self.q, meta=np.array(meta))
                else:
                    f.write(json.dumps(self.to_dict()).encode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def tie_order(actions: Sequence[int]) -> list[int]:
    """Action indices in tie-break order: smallest ``|delta|`` first, then up before down.

    Holding is the natural default of an unlearnt state, and adding capacity is the safer
    mistake under load.
    """
    return sorted(range(len(actions)), key=lambda i: (abs(actions[i]), -actions[i]))


def greedy_action(row: np.ndarray, order: np.ndarray) -> int:
    """Index of the largest value of ``row``, ties broken by ``order`` (see :func:`tie_order`)."""
    return int(order[int(np.argmax(row[order]))])


def load_model(path: str | Path) -> QModel:
    """Read a model written by :meth:`QModel.save`.

    Raises :class:`~tidal.core.errors.TidalInputError` naming the path when the file is missing,
    unreadable, or not a valid tidal Q model.
    """
    path = Path(path)
    if not path.is_file():
        raise TidalInputError(str(path), "Q model file not found" if not path.exists() else "not a file")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return QModel.from_dict(data)
        with np.load(path, allow_pickle=False) as npz:
            if "q" not in npz.files or "meta" not in npz.files:
                raise ValueError(f"expected arrays 'q' and 'meta', found {sorted(npz.files)}")
            meta = json.loads(str(npz["meta"][()]))
            if not isinstance(meta, dict):
                raise ValueError("'meta' is not a JSON object")
            return QModel.from_dict(meta, q=npz["q"])
    except OSError as exc:
        raise TidalInputError(str(path), f"cannot read Q model: {exc}") from None
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as exc:
        reason = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise TidalInputError(str(path), f"not a valid tidal Q model ({reason})") from None


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value

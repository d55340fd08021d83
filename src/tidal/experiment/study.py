"""Optuna studies for ``tidal tune``: named after the problem, resumable, never mixed up.

A study is named after a hash of the tuning problem — the scenario (SLO included), the policy and
its fixed parameters — so running the same command against the same storage resumes it. The
hashes are stored as study user attributes and checked on every open: a storage that holds a
study for another scenario is refused (pass ``--study-name`` to share one storage knowingly).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from tidal import __version__
from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError
from tidal.experiment.compare import portable_scenario
from tidal.experiment.space import Space

#: Both objectives are minimised: cost, then SLO violation.
DIRECTIONS = (optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MINIMIZE)


@dataclass(frozen=True)
class StudyKey:
    """What identifies a tuning problem: the scenario alone, and scenario + policy."""

    scenario_hash: str
    problem_hash: str
    scenario: str
    policy: str

    @property
    def study_name(self) -> str:
        return f"tidal-{self.policy}-{self.problem_hash[:12]}"

    def attrs(self) -> dict[str, Any]:
        return {
            "created_by": "tidal tune",
            "tidal_version": __version__,
            "scenario_hash": self.scenario_hash,
            "problem_hash": self.problem_hash,
            "scenario": self.scenario,
            "policy": self.policy,
        }


def study_key(scenario: Scenario, space: Space) -> StudyKey:
    """Hash the scenario (name and description aside; searched values aside) and the policy."""
    data = portable_scenario(scenario)
    for cosmetic in ("name", "description", "policy"):
        data.pop(cosmetic, None)
    scenario_hash = _digest(data)
    problem_hash = _digest({"scenario": scenario_hash, "policy": space.fixed_block()})
    return StudyKey(scenario_hash, problem_hash, scenario.name, space.policy)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def storage_url(text: str) -> str:
    """``sqlite:///...`` for a plain path; database URLs pass through."""
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    if not path.parent.is_dir():
        raise TidalInputError("--storage", f"folder {path.parent} does not exist")
    if path.is_dir():
        raise TidalInputError("--storage", f"{path} is a folder; give a file such as study.db")
    return f"sqlite:///{path}"


def open_study(
    key: StudyKey,
    storage: str | None,
    sampler: optuna.samplers.BaseSampler,
    study_name: str | None = None,
) -> optuna.Study:
    """Create or resume the study of ``key`` (in memory without ``storage``).

    Raises :class:`TidalInputError` if the storage cannot be opened, if the named study was made
    for another problem, or — without an explicit ``study_name`` — if the storage holds a study
    for another scenario.
    """
    name = study_name or key.study_name
    if storage is None:
        study = optuna.create_study(directions=list(DIRECTIONS), sampler=sampler, study_name=name)
        _stamp(study, key)
        return study
    url = storage_url(storage)
    _check_studies(key, storage, url, name, explicit_name=study_name is not None)
    try:
        study = optuna.create_study(
            storage=url, study_name=name, directions=list(DIRECTIONS), sampler=sampler, load_if_exists=True,
        )
    except ValueError as exc:  # e.g. a study of that name with other directions
        raise TidalInputError("--storage", f"cannot use study {name!r} in {storage}: {_first_line(exc)}") from None
    if tuple(study.directions) != DIRECTIONS:
        raise TidalInputError("--storage", f"study {name!r} in {storage} does not minimise (cost, SLO violation)")
    if "problem_hash" not in study.user_attrs:
        _stamp(study, key)
    return study


def check_storage(key: StudyKey, storage: str, study_name: str | None = None) -> None:
    """Raise :class:`TidalInputError` now if :func:`open_study` would refuse ``storage``.

    For callers that print or run anything before opening the study. A SQLite file that does not
    exist yet holds no study to conflict with, and is not created here.
    """
    url = storage_url(storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return
    _check_studies(key, storage, url, study_name or key.study_name, explicit_name=study_name is not None)


def _check_studies(key: StudyKey, storage: str, url: str, name: str, explicit_name: bool) -> None:
    """Refuse a storage that cannot be read, or holds studies for another problem (see :func:`open_study`)."""
    try:
        summaries = optuna.study.get_all_study_summaries(url, include_best_trial=False)
    except Exception as exc:  # sqlalchemy / optuna raise many types for "not a study database"
        raise TidalInputError("--storage", f"cannot open {storage}: {_first_line(exc)}") from None
    for summary in summaries:
        attrs = summary.user_attrs
        if summary.study_name == name:
            if attrs.get("problem_hash") != key.problem_hash:
                raise TidalInputError(
                    "--storage",
                    f"study {name!r} in {storage} was made for {_describe(attrs)}, not for this scenario "
                    f"{_this(key)} with policy {key.policy!r}; use another --storage or --study-name",
                )
        elif not explicit_name and attrs.get("scenario_hash") != key.scenario_hash:
            raise TidalInputError(
                "--storage",
                f"{storage} holds study {summary.study_name!r} made for {_describe(attrs)}, not for this "
                f"scenario {_this(key)}; use another --storage (or --study-name to share this one)",
            )


def _stamp(study: optuna.Study, key: StudyKey) -> None:
    for name, value in key.attrs().items():
        study.set_user_attr(name, value)


def _describe(attrs: Mapping[str, Any]) -> str:
    if "scenario_hash" not in attrs:
        return "something else (not by tidal tune)"
    digest = str(attrs["scenario_hash"])[:12]
    return f"scenario {attrs.get('scenario')!r} (hash {digest}) with policy {attrs.get('policy')!r}"


def _this(key: StudyKey) -> str:
    # Names may coincide (an edited file keeps its name): the hash tells the versions apart.
    return f"{key.scenario!r} (hash {key.scenario_hash[:12]})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

"""The arms of a comparison: which policies run, under which labels, with which parameters.

An arm is a label and a policy block. ``--policies hpa,kpa`` gives one arm per name with that
policy's defaults — except the scenario's own policy, which keeps the scenario's block. A
policies file maps labels to blocks, so one policy can run with several parameter sets::

    hpa-60: {name: hpa, target: 0.6}
    hpa-80: {name: hpa, target: 0.8}

Every block is validated (by the policy registry) before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidal.config.loader import load_yaml
from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError
from tidal.policy import available_policies, validate_policy_block

#: Labels become table rows, file names and HTML ids: keep them printable and short.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+@-]{0,63}$")


@dataclass(frozen=True)
class Arm:
    """One policy under comparison.

    ``block`` is the policy block as given (what the simulator builds the policy from);
    ``params`` is the validated block with every default filled in (JSON-safe, for reports).
    """

    label: str
    name: str
    block: Mapping[str, Any] = field(hash=False)
    params: Mapping[str, Any] = field(hash=False)


def resolve_arms(
    scenario: Scenario,
    names: Iterable[str] = (),
    policies_file: str | Path | None = None,
) -> tuple[Arm, ...]:
    """Arms for ``names`` (policy names) and the labelled blocks of ``policies_file``.

    Raises :class:`TidalInputError` naming the option (or file and label) for an unknown policy,
    a bad parameter, a duplicate label, or when no policy is given at all.
    """
    arms: list[Arm] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in available_policies():
            raise TidalInputError("--policies", f"unknown policy {name!r}; choose one of {', '.join(available_policies())}")
        if scenario.policy.get("name") == name:
            arms.append(make_arm(name, dict(scenario.policy), "policy"))
            continue
        try:
            arms.append(make_arm(name, {"name": name}, f"--policies {name}"))
        except TidalInputError as exc:
            raise TidalInputError(exc.where, f"{exc.problem} (a bare name uses the policy's defaults; "
                                  "give parameters with --policies-file)") from None
    if policies_file is not None:
        arms.extend(arms_from_file(policies_file))
    if not arms:
        raise TidalInputError("--policies", "give at least one policy (e.g. --policies static,target_utilization)")
    seen: set[str] = set()
    for arm in arms:
        if arm.label in seen:
            raise TidalInputError("--policies", f"policy label {arm.label!r} given twice")
        seen.add(arm.label)
    return tuple(arms)


def arms_from_file(path: str | Path) -> list[Arm]:
    """Arms from a YAML mapping of label → policy block (a bare name means its defaults)."""
    data = load_yaml(path)
    if not isinstance(data, Mapping) or not data:
        raise TidalInputError(str(path), "expected a mapping of labels to policy blocks, e.g. 'hpa-60: {name: hpa}'")
    arms = []
    for label, block in data.items():
        label = str(label)
        if isinstance(block, str):
            block = {"name": block}
        arms.append(make_arm(label, block, f"{path}: {label}"))
    return arms


def make_arm(label: str, block: Any, where: str) -> Arm:
    """Validate one policy block and return its arm; errors name ``where`` and the field."""
    if not _LABEL.match(label):
        raise TidalInputError(where, "labels use letters, digits and _ . : + @ - (at most 64 characters)")
    name, config, stabilization = validate_policy_block(block, where)
    # By alias: policies whose blocks mirror a manifest (hpa: averageUtilization) show the keys users write.
    params: dict[str, Any] = {"name": name, **config.model_dump(mode="json", by_alias=True, exclude_none=True)}
    if stabilization is not None:
        params["stabilization"] = stabilization.model_dump(mode="json")
    return Arm(label=label, name=name, block=dict(block), params=params)

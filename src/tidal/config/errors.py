"""One way to turn a pydantic ``ValidationError`` into a field path and a plain message.

Scenario files, controller configs, serve configs and policy blocks all report their first error
through :func:`describe_validation_error`, so users read one style everywhere:
``scenario.yaml: service.concurrency: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

#: Location parts pydantic adds for union members and validators, never field names.
_MEMBER_NAMES = {"int", "str", "float", "bool"}


def describe_validation_error(exc: ValidationError, source: str,
                              union_tags: Mapping[str, frozenset[str] | set[str]] | None = None,
                              tag_hints: Mapping[str, str] | None = None) -> tuple[str, str]:
    """First error of ``exc`` as ``(f"{source}: {path}", message)``.

    ``union_tags`` maps a discriminated-union field to its tag values: pydantic puts the tag in
    the location (``workload.trace.path``), which is dropped so the path reads as written in the
    file (``workload.path``). ``tag_hints`` names the accepted tags per field for a missing tag.
    A model-level check whose message starts with a field path (``"fallback.replicas: ..."``)
    is reported at that path.
    """
    union_tags = union_tags or {}
    err = exc.errors()[0]
    parts: list[str] = []
    for part in err["loc"]:
        text = str(part)
        if parts and text in union_tags.get(parts[-1], ()):
            continue
        if text in _MEMBER_NAMES or text.startswith(("literal[", "function-")):
            continue
        parts.append(text)
    path = ".".join(parts) or "(top level)"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required field missing"
    elif err["type"] == "union_tag_invalid":
        message = f"unknown value {err['ctx'].get('tag')!r}; expected one of {err['ctx']['expected_tags']}"
    elif err["type"] == "union_tag_not_found":
        hint = (tag_hints or {}).get(parts[-1] if parts else "", "")
        message = f"missing {err['ctx']['discriminator']}" + (f" ({hint})" if hint else "")
    message = message.removeprefix("Value error, ")
    head, sep, rest = message.partition(": ")
    if path == "(top level)" and sep and head.replace(".", "").replace("_", "").isalnum():
        path, message = head, rest
    return f"{source}: {path}" if source else path, message

"""The scaling-modifier formula evaluator: expr-lang's arithmetic, precedence, nil and safety."""

from __future__ import annotations

import math

import pytest

from tidal.policy.keda.expr import MAX_DEPTH, MAX_FORMULA_LENGTH, ExprError, compile_formula

ENV = {"a": 2.0, "b": 5.0, "c": None, "queue": 12.0}


def run(source: str, **env: float | None):
    values = {**ENV, **env}
    return compile_formula(source, values).run(values)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a + b", 7.0),
        ("(a + b) / 2", 3.5),
        ("a * b - 1", 9.0),
        ("7 / 2", 3.5),                  # division is always float
        ("7 % 3", 1),
        ("-7 % 3", -1),                  # Go: the sign of the dividend
        ("2 ** 3 ** 2", 512.0),          # right associative
        ("2 ^ 3", 8.0),
        ("-2 ** 2", -4.0),               # unary minus binds looser than **
        ("a + b * 2", 12.0),
        ("queue > 10 ? queue : 0", 12.0),
        ("queue > 20 ? queue : 0", 0),
        ("a < b && b < queue", True),
        ("a > b || not (a == b)", True),
        ("!true == false", True),        # (!true) == false, as expr-lang parses it
        ("c ?? b", 5.0),
        ("a ?? b", 2.0),
        ("c ?? c ?? 3", 3),
        ("a + c ?? 1", 3.0),             # ?? binds tighter than +
        ("c == nil", True),
        ("max(a, b, queue)", 12.0),
        ("min([a, b])", 2.0),
        ("sum([a, b, 1])", 8.0),
        ("mean([a, b])", 3.5),
        ("median([a, b, queue])", 5.0),
        ("abs(-a)", 2.0),
        ("ceil(2.1) + floor(2.9)", 5.0),
        ("round(2.5) + round(-2.5)", 0.0),   # half away from zero (Go), not to even
        ("int(7.9)", 7),
        ("float(3)", 3.0),
        ("1_000 + 1e3", 2000.0),
    ],
)
def test_expressions(source, expected):
    result = run(source)
    assert result == expected
    assert type(result) is type(expected)


def test_go_float_division_edge_cases():
    assert run("a / 0") == math.inf
    assert math.isnan(run("0 / 0.0"))
    assert run("10.0 ** 400") == math.inf


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("a +", "end of formula"),
        ("a b", "unexpected"),
        ("unknown + 1", "unknown name 'unknown'"),
        ("exec(1)", "unknown function 'exec'"),
        ("__import__('os')", "unexpected character"),
        ("a.__class__", "unexpected character"),
        ("(a", "expected ')'"),
        ("max()", "at least one argument"),
        ("abs(a, b)", "takes 1 argument"),
        ("", "empty"),
    ],
)
def test_compile_errors(source, message):
    with pytest.raises(ExprError) as err:
        compile_formula(source, ENV)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("c + 1", "invalid operation: nil + int"),
        ("a ? 1 : 2", "non-bool expression"),
        ("a && true", "needs bool"),
        ("a % 2", "needs integers"),
        ("5 % 0", "integer divide by zero"),
        ("max([c])", "invalid argument for max"),
        ("a < c", "invalid operation"),
    ],
)
def test_runtime_errors(source, message):
    with pytest.raises(ExprError) as err:
        run(source)
    assert message in str(err.value)


def test_short_circuit_skips_the_other_branch():
    assert run("b ?? (c + 1)") == 5.0
    assert run("true || (c + 1 > 0)") is True
    assert run("a > 0 ? a : c + 1") == 2.0


def test_hostile_inputs_are_bounded():
    with pytest.raises(ExprError):
        compile_formula("1+" * MAX_FORMULA_LENGTH + "1", {})
    with pytest.raises(ExprError):
        compile_formula("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), {})
    with pytest.raises(ExprError):
        compile_formula("-" * (MAX_DEPTH + 1) + "1", {})


def test_compiled_formula_is_reusable():
    formula = compile_formula("a + b", ["a", "b"])
    assert [formula.run({"a": x, "b": 1.0}) for x in (1.0, 2.0)] == [2.0, 3.0]

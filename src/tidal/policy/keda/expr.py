"""A small, safe evaluator for KEDA ``scalingModifiers.formula`` expressions.

KEDA evaluates formulas with expr-lang (``github.com/expr-lang/expr``). This module implements
the numeric subset that formulas over trigger values use, with expr-lang's precedence and
typing, and nothing else: no attribute access, no Python ``eval``, no I/O.

Supported:

* literals: integers, floats (``1.5``, ``2e3``, ``1_000``), ``true``, ``false``, ``nil``;
  array literals ``[a, b]`` (only as arguments of ``max``/``min``/``sum``/``mean``/``median``);
* variables: the trigger names given at compile time (unknown names are compile errors);
* arithmetic ``+ - * / % ** ^`` (``/`` and ``**`` always give a float, ``%`` needs integers,
  as in expr-lang), unary ``-``/``+``;
* comparison ``== != < <= > >=``; logic ``! not && and || or``; conditional ``c ? a : b``;
  nil coalescing ``a ?? b`` (KEDA's fallback ``scalingModifiers`` behaviour feeds ``nil`` for a
  failing trigger so that ``a ?? b`` picks the next source);
* functions ``abs ceil floor round int float max min sum mean median``.

Precedence follows expr-lang's operator table: ``??`` binds tightest, then ``** ^`` (right
associative), unary ``- +``, ``* / %``, ``+ -``, comparisons, unary ``not !``, ``and &&``,
``or ||``, and the conditional last.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Formulas longer than this are rejected (a formula is one line of YAML, not a program).
MAX_FORMULA_LENGTH = 4096
#: Parser nesting limit, so a hostile formula cannot exhaust Python's recursion limit.
MAX_DEPTH = 64


class ExprError(ValueError):
    """A formula failed to compile or to evaluate (the message says where and why)."""


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>\?\?|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%^<>!?:(),\[\]])
    """,
    re.VERBOSE,
)
_WORD_OPERATORS = {"and", "or", "not"}
_LITERALS = {"true": True, "false": False, "nil": None}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise ExprError(f"unexpected character {source[pos]!r} at position {pos}")
        kind = match.lastgroup or ""
        text = match.group()
        if kind != "ws":
            if kind == "name" and text in _WORD_OPERATORS:
                kind = "op"
            tokens.append(_Token(kind, text, pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


# --------------------------------------------------------------------------- AST
# Nodes are plain tuples: ("num", value) ("var", name) ("lit", value) ("array", items)
# ("unary", op, operand) ("binary", op, left, right) ("cond", test, then, else) ("call", fn, args)

_BINARY = {  # operator -> (precedence, right associative)
    "or": (10, False), "||": (10, False),
    "and": (15, False), "&&": (15, False),
    "==": (20, False), "!=": (20, False), "<": (20, False), ">": (20, False),
    "<=": (20, False), ">=": (20, False),
    "+": (30, False), "-": (30, False),
    "*": (60, False), "/": (60, False), "%": (60, False),
    "**": (100, True), "^": (100, True),
    "??": (500, False),
}
_UNARY = {"not": 50, "!": 50, "-": 90, "+": 90}


class _Parser:
    """Precedence-climbing parser over expr-lang's operator table."""

    def __init__(self, source: str, names: frozenset[str]) -> None:
        self.tokens = _tokenize(source)
        self.i = 0
        self.names = names
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind != "op":
            raise ExprError(f"expected {text!r} at position {token.pos}, got {token.text or 'end of formula'!r}")

    def parse(self) -> tuple:
        node = self.expression()
        token = self.peek()
        if token.kind != "end":
            raise ExprError(f"unexpected {token.text!r} at position {token.pos}")
        return node

    def expression(self) -> tuple:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"formula nests deeper than {MAX_DEPTH} levels")
        node = self.binary(0)
        if self.peek().kind == "op" and self.peek().text == "?":
            self.take()
            then = self.expression()
            self.expect(":")
            otherwise = self.expression()
            node = ("cond", node, then, otherwise)
        self.depth -= 1
        return node

    def binary(self, min_precedence: int) -> tuple:
        left = self.unary()
        while True:
            token = self.peek()
            rule = _BINARY.get(token.text) if token.kind == "op" else None
            if rule is None or rule[0] < min_precedence:
                return left
            self.take()
            precedence, right_assoc = rule
            right = self.binary(precedence if right_assoc else precedence + 1)
            left = ("binary", token.text, left, right)

    def unary(self) -> tuple:
        token = self.peek()
        if token.kind == "op" and token.text in _UNARY:
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExprError(f"formula nests deeper than {MAX_DEPTH} levels")
            # As in expr-lang, the operand absorbs binary operators that bind at least as
            # tightly as the unary one: -2 ** 2 is -(2 ** 2), not a == b is (not a) == b.
            operand = self.binary(_UNARY[token.text])
            self.depth -= 1
            return ("unary", token.text, operand)
        return self.primary()

    def primary(self) -> tuple:
        token = self.take()
        if token.kind == "num":
            return ("num", _number(token))
        if token.kind == "name":
            if token.text in _LITERALS:
                return ("lit", _LITERALS[token.text])
            if self.peek().kind == "op" and self.peek().text == "(":
                return self.call(token)
            if token.text not in self.names:
                raise ExprError(f"unknown name {token.text!r} at position {token.pos}")
            return ("var", token.text)
        if token.kind == "op" and token.text == "(":
            node = self.expression()
            self.expect(")")
            return node
        if token.kind == "op" and token.text == "[":
            items = self.arguments("]")
            return ("array", tuple(items))
        raise ExprError(f"unexpected {token.text or 'end of formula'!r} at position {token.pos}")

    def call(self, name: _Token) -> tuple:
        if name.text not in _FUNCTIONS:
            raise ExprError(f"unknown function {name.text!r} at position {name.pos}")
        self.expect("(")
        args = self.arguments(")")
        arity = _FUNCTIONS[name.text][1]
        if arity is not None and len(args) != arity:
            raise ExprError(f"{name.text}() takes {arity} argument(s), got {len(args)}")
        if arity is None and not args:
            raise ExprError(f"{name.text}() needs at least one argument")
        return ("call", name.text, tuple(args))

    def arguments(self, closer: str) -> list[tuple]:
        args: list[tuple] = []
        if self.peek().kind == "op" and self.peek().text == closer:
            self.take()
            return args
        while True:
            args.append(self.expression())
            token = self.take()
            if token.kind == "op" and token.text == closer:
                return args
            if token.kind != "op" or token.text != ",":
                raise ExprError(f"expected ',' or {closer!r} at position {token.pos}")


def _number(token: _Token) -> int | float:
    text = token.text.replace("_", "")
    try:
        if re.fullmatch(r"\d+", text):
            return int(text)
        return float(text)
    except ValueError:
        raise ExprError(f"bad number {token.text!r} at position {token.pos}") from None


# --------------------------------------------------------------------------- evaluation


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _numbers(op: str, left: Any, right: Any) -> None:
    if not (_is_number(left) and _is_number(right)):
        raise ExprError(f"invalid operation: {_type_name(left)} {op} {_type_name(right)}")


def _divide(left: float, right: float) -> float:
    # Go float division: x/0 is ±Inf, 0/0 is NaN (no exception).
    if right == 0:
        if left == 0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return left / right


def _power(left: float, right: float) -> float:
    # Go math.Pow: overflow is +Inf and a domain error is NaN, never an exception.
    try:
        return math.pow(left, right)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def _modulo(left: int, right: int) -> int:
    if right == 0:
        raise ExprError("integer divide by zero")
    # Go's % truncates toward zero: the result has the sign of the dividend.
    remainder = abs(left) % abs(right)
    return -remainder if left < 0 else remainder


def _arith(op: str, left: Any, right: Any) -> Any:
    _numbers(op, left, right)
    both_int = isinstance(left, int) and isinstance(right, int)
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return _divide(float(left), float(right))
    if op == "%":
        if not both_int:
            raise ExprError(f"invalid operation: {_type_name(left)} % {_type_name(right)} (% needs integers)")
        return _modulo(left, right)
    return _power(float(left), float(right))  # ** and ^


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        if _is_number(left) and _is_number(right):
            equal = float(left) == float(right)
        else:
            equal = type(left) is type(right) and left == right
        return equal if op == "==" else not equal
    _numbers(op, left, right)
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _bool(op: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"invalid operation: {op} on {_type_name(value)} (needs bool)")
    return value


def _flatten(name: str, args: list[Any]) -> list[float | int]:
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    for v in values:
        if not _is_number(v):
            raise ExprError(f"invalid argument for {name} (type {_type_name(v)})")
    return list(values)


def _one_number(name: str, value: Any) -> float | int:
    if not _is_number(value):
        raise ExprError(f"invalid argument for {name} (type {_type_name(value)})")
    return value


def _go_round(x: float) -> float:
    # Go math.Round rounds half away from zero (Python's round() rounds half to even).
    if not math.isfinite(x):
        return x
    return math.copysign(math.floor(abs(x) + 0.5), x)


def _to_int(value: Any) -> int:
    number = _one_number("int", value)
    if isinstance(number, float) and not math.isfinite(number):
        raise ExprError("invalid argument for int (not finite)")
    return int(number)  # truncates toward zero, as Go's int(float64)


def _median(values: list[float | int]) -> float:
    ordered = sorted(float(v) for v in values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _rounding(name: str, fn: Callable[[float], float]) -> Callable[[list[Any]], float]:
    def apply(args: list[Any]) -> float:
        x = float(_one_number(name, args[0]))
        return fn(x) if math.isfinite(x) else x  # Go keeps ±Inf and NaN as they are

    return apply


def _aggregate(name: str, fn: Callable[[list[float | int]], Any]) -> Callable[[list[Any]], Any]:
    def apply(args: list[Any]) -> Any:
        values = _flatten(name, args)
        if not values:
            raise ExprError(f"{name}() of an empty array")
        return fn(values)

    return apply


_FUNCTIONS: dict[str, tuple[Callable[[list[Any]], Any], int | None]] = {
    # name: (implementation, arity or None for variadic / one array)
    "abs": (lambda a: abs(_one_number("abs", a[0])), 1),
    "ceil": (_rounding("ceil", lambda x: float(math.ceil(x))), 1),
    "floor": (_rounding("floor", lambda x: float(math.floor(x))), 1),
    "round": (_rounding("round", _go_round), 1),
    "int": (lambda a: _to_int(a[0]), 1),
    "float": (lambda a: float(_one_number("float", a[0])), 1),
    "max": (_aggregate("max", max), None),
    "min": (_aggregate("min", min), None),
    "sum": (_aggregate("sum", sum), None),
    "mean": (_aggregate("mean", lambda v: sum(float(x) for x in v) / len(v)), None),
    "median": (_aggregate("median", _median), None),
}


def _evaluate(node: tuple, env: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind in ("num", "lit"):
        return node[1]
    if kind == "var":
        return env.get(node[1])
    if kind == "array":
        return [_evaluate(item, env) for item in node[1]]
    if kind == "unary":
        value = _evaluate(node[2], env)
        if node[1] in ("not", "!"):
            return not _bool(node[1], value)
        if not _is_number(value):
            raise ExprError(f"invalid operation: {node[1]}{_type_name(value)}")
        return -value if node[1] == "-" else value
    if kind == "binary":
        op = node[1]
        if op == "??":
            left = _evaluate(node[2], env)
            return left if left is not None else _evaluate(node[3], env)
        if op in ("and", "&&"):
            return _bool(op, _evaluate(node[2], env)) and _bool(op, _evaluate(node[3], env))
        if op in ("or", "||"):
            return _bool(op, _evaluate(node[2], env)) or _bool(op, _evaluate(node[3], env))
        left = _evaluate(node[2], env)
        right = _evaluate(node[3], env)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return _compare(op, left, right)
        return _arith(op, left, right)
    if kind == "cond":
        test = _evaluate(node[1], env)
        if not isinstance(test, bool):
            raise ExprError(f"non-bool expression (type {_type_name(test)}) used as condition")
        return _evaluate(node[2] if test else node[3], env)
    if kind == "call":
        args = [_evaluate(arg, env) for arg in node[2]]
        return _FUNCTIONS[node[1]][0](args)
    raise ExprError(f"internal error: unknown node {kind!r}")  # pragma: no cover


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Formula:
    """A compiled formula: evaluate it with :meth:`run` as often as needed."""

    source: str
    names: frozenset[str]
    _ast: tuple

    def run(self, env: Mapping[str, float | None]) -> Any:
        """Evaluate with ``env`` (trigger name -> value, ``None`` for nil).

        Returns a number, a bool or ``None``; raises :class:`ExprError` on a runtime error
        (``nil + 1``, a non-bool condition, integer ``% 0``, ...).
        """
        try:
            return _evaluate(self._ast, env)
        except RecursionError:  # pragma: no cover - bounded by MAX_DEPTH
            raise ExprError("formula too deeply nested") from None


def compile_formula(source: str, names: Iterable[str]) -> Formula:
    """Parse ``source`` with the variables ``names``; raise :class:`ExprError` if it is invalid."""
    if not isinstance(source, str) or not source.strip():
        raise ExprError("formula is empty")
    if len(source) > MAX_FORMULA_LENGTH:
        raise ExprError(f"formula is longer than {MAX_FORMULA_LENGTH} characters")
    name_set = frozenset(names)
    return Formula(source, name_set, _Parser(source, name_set).parse())

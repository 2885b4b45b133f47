"""The `when` language: a tiny condition on parameters and earlier steps' outcomes, never code.

Grammar (``or`` binds loosest)::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | ">" | ">=" | "<" | "<=") operand)?
    operand := NAME | NUMBER | 'string' | "string" | true | false | null | "(" expr ")"
    NAME    := params.<param> | steps.<step>.<state | failed_items | succeeded_items | total_items | attempts>

Examples: ``steps.shots.failed_items > 0``, ``params.caption``,
``steps.restyle.state == 'succeeded' and not params.dry_run``. A name is
checked when the definition is validated, so a typo is a 422, not a skip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STEP_FIELDS = ("state", "failed_items", "succeeded_items", "total_items", "attempts")
_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*'|"[^"]*")|(?P<op>==|!=|>=|<=|>|<|\(|\))|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))""")
_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}
_WORDS = {"true": True, "false": False, "null": None}


class ConditionError(ValueError):
    """A `when` that does not parse, names something unknown, or compares what cannot be compared."""


@dataclass(frozen=True)
class Name:
    """``params.x`` or ``steps.S.field``."""

    parts: tuple[str, ...]


@dataclass(frozen=True)
class Node:
    op: str  # "or", "and", "not", a comparison, or "lit"
    args: tuple[Any, ...]


def parse(text: str) -> Node:
    tokens = _tokens(text)
    node, rest = _expr(tokens)
    if rest:
        raise ConditionError(f"unexpected {rest[0][1]!r} in {text!r}")
    return node


def names(node: Node) -> list[Name]:
    """Every name the condition reads, in order."""
    found: list[Name] = []
    for arg in node.args:
        if isinstance(arg, Name):
            found.append(arg)
        elif isinstance(arg, Node):
            found.extend(names(arg))
    return found


def check_names(node: Node, params: Mapping[str, Any], steps: Mapping[str, Any]) -> list[str]:
    """The steps a valid condition reads (its dependencies); ConditionError for an unknown name."""
    read: list[str] = []
    for name in names(node):
        head, *rest = name.parts
        if head == "params" and len(rest) == 1:
            if rest[0] not in params:
                raise ConditionError(f"unknown parameter {rest[0]!r}")
        elif head == "steps" and len(rest) == 2:
            if rest[0] not in steps:
                raise ConditionError(f"unknown step {rest[0]!r}")
            if rest[1] not in STEP_FIELDS:
                raise ConditionError(f"a step has no {rest[1]!r}; a condition may read {', '.join(STEP_FIELDS)}")
            read.append(rest[0])
        else:
            raise ConditionError(f"{'.'.join(name.parts)!r} is not params.<name> or steps.<step>.<{'|'.join(STEP_FIELDS)}>")
    return read


def evaluate(node: Node, params: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]]) -> bool:
    return bool(_value(node, params, steps))


def _value(node: Any, params: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]]) -> Any:
    if isinstance(node, Name):
        head, *rest = node.parts
        return params.get(rest[0]) if head == "params" else steps[rest[0]].get(rest[1])
    if node.op == "lit":
        return node.args[0]
    if node.op == "or":
        return any(_value(a, params, steps) for a in node.args)
    if node.op == "and":
        return all(_value(a, params, steps) for a in node.args)
    if node.op == "not":
        return not _value(node.args[0], params, steps)
    left, right = (_value(a, params, steps) for a in node.args)
    try:
        return _COMPARE[node.op](left, right)
    except TypeError:
        raise ConditionError(f"cannot compare {left!r} {node.op} {right!r}") from None


Tokens = list[tuple[str, str]]


def _tokens(text: str) -> Tokens:
    out: Tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    if not out:
        raise ConditionError("an empty condition")
    return out


def _expr(tokens: Tokens) -> tuple[Node, Tokens]:
    return _chain(tokens, "or", _and)


def _and(tokens: Tokens) -> tuple[Node, Tokens]:
    return _chain(tokens, "and", _not)


def _chain(tokens: Tokens, word: str, inner: Any) -> tuple[Node, Tokens]:
    node, tokens = inner(tokens)
    args = [node]
    while tokens and tokens[0] == ("name", word):
        node, tokens = inner(tokens[1:])
        args.append(node)
    return (args[0] if len(args) == 1 else Node(word, tuple(args))), tokens


def _not(tokens: Tokens) -> tuple[Node, Tokens]:
    if tokens and tokens[0] == ("name", "not"):
        node, rest = _not(tokens[1:])
        return Node("not", (node,)), rest
    return _compare(tokens)


def _compare(tokens: Tokens) -> tuple[Node, Tokens]:
    left, tokens = _operand(tokens)
    if tokens and tokens[0][0] == "op" and tokens[0][1] in _COMPARE:
        op = tokens[0][1]
        right, tokens = _operand(tokens[1:])
        return Node(op, (left, right)), tokens
    return _truthy(left), tokens


def _truthy(operand: Any) -> Node:
    """A bare operand is true when its value is truthy."""
    return operand if isinstance(operand, Node) else Node("and", (operand,))


def _operand(tokens: Tokens) -> tuple[Any, Tokens]:
    if not tokens:
        raise ConditionError("the condition ends too early")
    (kind, text), rest = tokens[0], tokens[1:]
    if kind == "num":
        return Node("lit", (float(text) if "." in text else int(text),)), rest
    if kind == "str":
        return Node("lit", (text[1:-1],)), rest
    if kind == "op" and text == "(":
        node, rest = _expr(rest)
        if not rest or rest[0] != ("op", ")"):
            raise ConditionError("a '(' is not closed")
        return node, rest[1:]
    if kind == "name" and text in _WORDS:
        return Node("lit", (_WORDS[text],)), rest
    if kind == "name" and text not in ("and", "or", "not"):
        return Name(tuple(text.split("."))), rest
    raise ConditionError(f"unexpected {text!r}")

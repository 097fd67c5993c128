"""The two little expression languages a walk must evaluate: step `when` and DAG `depends`.

`when` is govaluate with one Argo twist (steps.go `shouldExecute`): bare words are strings, so
`heads == heads` is true without quotes. We implement the subset workflows use — literals, `== != < > <= >=`,
`=~ !~`, `&& || !` and parentheses — and answer `None` ("cannot tell") for anything else, including
values that still carry a `{{…}}` tag or an unknown-output placeholder. The walker then assumes the step
runs, and says so.

`depends` (dag.go `evaluateDependsLogic`) combines `task.Result` terms; a bare `task` means
`task.Succeeded || task.Skipped || task.Daemoned`. `dependencies: [a, b]` is `a && b`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TaskState", "depends_task_names", "evaluate_depends", "evaluate_when"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?\d+(?:\.\d+)?(?![\w.\-]))
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|>=|<=|=~|!~|&&|\|\||[<>!()])
      | (?P<word>[^\s()=!<>&|'"]+)
    )""",
    re.X,
)


class _Unknown(Exception):
    pass


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _Unknown(text)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


Value = float | str | bool


class _WhenParser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise _Unknown("unexpected end")
        self.pos += 1
        return token

    def parse(self) -> Value:
        value = self.or_expr()
        if self.peek() is not None:
            raise _Unknown("trailing tokens")
        return value

    def or_expr(self) -> Value:
        left = self.and_expr()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_expr()
            left = _truth(left) or _truth(right)
        return left

    def and_expr(self) -> Value:
        left = self.cmp_expr()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.cmp_expr()
            left = _truth(left) and _truth(right)
        return left

    def cmp_expr(self) -> Value:
        left = self.unary()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in ("==", "!=", "<", ">", "<=", ">=", "=~", "!~"):
            self.take()
            right = self.unary()
            return _compare(token[1], left, right)
        return left

    def unary(self) -> Value:
        token = self.take()
        kind, text = token
        if (kind, text) == ("op", "!"):
            return not _truth(self.unary())
        if (kind, text) == ("op", "("):
            value = self.or_expr()
            if self.take() != ("op", ")"):
                raise _Unknown("unbalanced parentheses")
            return value
        if kind == "num":
            return float(text)
        if kind == "str":
            return text[1:-1]
        if kind == "word":
            if text == "true":
                return True
            if text == "false":
                return False
            return text
        raise _Unknown(f"unexpected {text!r}")


def _truth(value: Value) -> bool:
    if isinstance(value, bool):
        return value
    raise _Unknown("non-boolean operand")


def _compare(op: str, left: Value, right: Value) -> bool:
    if op in ("=~", "!~"):
        if not isinstance(left, str) or not isinstance(right, str):
            raise _Unknown("regex on non-strings")
        found = re.search(right, left) is not None
        return found if op == "=~" else not found
    if op == "==":
        return type(left) is type(right) and left == right
    if op == "!=":
        return not (type(left) is type(right) and left == right)
    if isinstance(left, float) and isinstance(right, float):
        return _ordered(op, left, right)
    if isinstance(left, str) and isinstance(right, str):
        return _ordered(op, left, right)
    raise _Unknown("ordering of mixed types")


def _ordered(op: str, left: float | str, right: float | str) -> bool:
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == ">":
        return left > right  # type: ignore[operator]
    if op == "<=":
        return left <= right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def evaluate_when(expression: str, unknown_markers: tuple[str, ...] = ()) -> bool | None:
    """`True`/`False` when the expression is fully resolved and in our subset, else `None`."""
    text = expression.strip()
    if not text:
        return True
    if "{{" in text or any(marker in text for marker in unknown_markers):
        return None
    try:
        value = _WhenParser(_tokenize(text)).parse()
    except (_Unknown, re.error):
        return None
    return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class TaskState:
    """How a finished dependency ended, in the terms `depends` can test."""

    succeeded: bool = False
    failed: bool = False
    errored: bool = False
    skipped: bool = False
    omitted: bool = False
    daemoned: bool = False
    any_succeeded: bool = False
    all_failed: bool = False


_DEPENDS_TERM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z]+)?")
_DEPENDS_TOKEN = re.compile(r"\s*(&&|\|\||!|\(|\)|[A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z]+)?)")
_RESULTS = {
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Errored": "errored",
    "Skipped": "skipped",
    "Omitted": "omitted",
    "Daemoned": "daemoned",
    "AnySucceeded": "any_succeeded",
    "AllFailed": "all_failed",
}


def depends_task_names(depends: str) -> list[str]:
    """Task names a `depends` expression mentions, in order of first mention."""
    names: list[str] = []
    for term in _DEPENDS_TERM.findall(depends):
        name = term.split(".", 1)[0]
        if name not in names:
            names.append(name)
    return names


def evaluate_depends(depends: str, states: Mapping[str, TaskState]) -> bool | None:
    """Evaluate `depends` against the states of finished tasks; `None` if it cannot be parsed."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = depends.strip()
    if not text:
        return True
    while pos < len(text):
        match = _DEPENDS_TOKEN.match(text, pos)
        if match is None:
            return None
        token = match.group(1)
        pos = match.end()
        if token in ("&&", "||", "!", "(", ")"):
            tokens.append(("op", token))
            continue
        name, _, result = token.partition(".")
        state = states.get(name)
        if state is None:
            return None
        if not result:
            value = state.succeeded or state.skipped or state.daemoned
        elif result in _RESULTS:
            value = bool(getattr(state, _RESULTS[result]))
        else:
            return None
        tokens.append(("word", "true" if value else "false"))
    try:
        outcome = _WhenParser(tokens).parse()
    except _Unknown:
        return None
    return outcome if isinstance(outcome, bool) else None

"""A DAG task's dependencies as Argo reads them, reduced to the one form a split can carry: a conjunction of terms.

Argo reads `depends` with the grammar of `workflow/common/ancestry.go` (v4.1.2): task names
`[a-zA-Z0-9][-a-zA-Z0-9]*`, optionally followed by `.Result` (`taskNameRegex`), combined with `!`, `&&`, `||` and
parentheses (evaluated by `evaluateDependsLogic` in `workflow/controller/dag.go`). The legacy `dependencies` list
means the conjunction of its bare names (`getTaskDependsLogic`), and a bare name expands to
`(X.Succeeded || X.Skipped || X.Daemoned)`, plus `X.Errored`/`X.Failed` when X has `continueOn`
(`expandDependency`).

A split can move a task into a nested group only when its condition is a plain conjunction: each term then either
stays beside the task (inside its group) or becomes part of the group's own condition. Anything else (`||`, `!`) is
parsed, so that every task it names is known, and reported as not a conjunction.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["RESULTS", "Condition", "Term", "condition_of", "render_depends"]

RESULTS: Final = frozenset({"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded",
                            "AllFailed"})
# A term satisfied only when its task ran to success (a bare name is Succeeded, Skipped or Daemoned): a task whose
# group holds no `when`, loop or daemon can be Skipped or Daemoned only if it never ran, so for such tasks both mean
# "it succeeded".
POSITIVE: Final = frozenset({"", "Succeeded"})

_TOKEN = re.compile(r"\s*(?:(&&|\|\||[()!])|([a-zA-Z0-9][-a-zA-Z0-9]*)(?:\.([A-Za-z]+))?)")


@dataclass(frozen=True, order=True)
class Term:
    """`task` or `task.Result`; `result` is "" for a bare name."""

    task: str
    result: str = ""

    def render(self) -> str:
        return f"{self.task}.{self.result}" if self.result else self.task

    @property
    def positive(self) -> bool:
        return self.result in POSITIVE


@dataclass(frozen=True)
class Condition:
    """A task's dependencies: every task it names, and its terms when it is a plain conjunction (else None)."""

    names: frozenset[str]
    conjunction: tuple[Term, ...] | None
    legacy: bool  # from `dependencies`, not `depends`


class DependsSyntaxError(ValueError):
    """The `depends` text is outside Argo's grammar."""


def condition_of(task: Mapping[str, Any]) -> Condition:
    """Raises DependsSyntaxError for text Argo would not read the same way."""
    depends = task.get("depends")
    dependencies = task.get("dependencies")
    if depends not in (None, ""):
        if not isinstance(depends, str) or dependencies:
            raise DependsSyntaxError("depends must be text and cannot be used with dependencies")
        return _parse(depends)
    if dependencies:
        if not isinstance(dependencies, list) or not all(isinstance(d, str) and _NAME.fullmatch(d)
                                                         for d in dependencies):
            raise DependsSyntaxError("dependencies must be a list of task names")
        return Condition(frozenset(dependencies), tuple(Term(d) for d in dependencies), legacy=True)
    return Condition(frozenset(), (), legacy=False)


_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")


def render_depends(terms: Sequence[Term]) -> str:
    return " && ".join(term.render() for term in terms)


@functools.lru_cache(maxsize=8192)  # a DAG is read several times (plan, rewrite, checks); a Condition is immutable
def _parse(text: str) -> Condition:
    tokens = _tokens(text)
    position = 0
    names: set[str] = set()

    def peek() -> str | Term | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str | Term:
        nonlocal position
        token = tokens[position]
        position += 1
        return token

    # Each returns the node's terms when it is a conjunction of terms, else None.
    def or_expr() -> list[Term] | None:
        terms = and_expr()
        while peek() == "||":
            take()
            and_expr()
            terms = None
        return terms

    def and_expr() -> list[Term] | None:
        terms = unary()
        while peek() == "&&":
            take()
            more = unary()
            terms = None if terms is None or more is None else terms + more
        return terms

    def unary() -> list[Term] | None:
        token = peek()
        if token == "!":
            take()
            unary()
            return None
        if token == "(":
            take()
            inner = or_expr()
            if peek() != ")":
                raise DependsSyntaxError(f"unbalanced parentheses in depends {text!r}")
            take()
            return inner
        if isinstance(token, Term):
            take()
            names.add(token.task)
            return [token]
        raise DependsSyntaxError(f"unexpected {token!r} in depends {text!r}")

    terms = or_expr()
    if position != len(tokens):
        raise DependsSyntaxError(f"unexpected {tokens[position]!r} in depends {text!r}")
    return Condition(frozenset(names), tuple(terms) if terms is not None else None, legacy=False)


def _tokens(text: str) -> list[str | Term]:
    tokens: list[str | Term] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise DependsSyntaxError(f"cannot read depends {text!r} at {text[position:position + 20]!r}")
        operator, name, result = match.groups()
        if operator:
            tokens.append(operator)
        else:
            if result is not None and result not in RESULTS:
                raise DependsSyntaxError(f"task result {result!r} for task {name!r} is invalid")
            tokens.append(Term(name, result or ""))
        position = match.end()
    if not tokens:
        raise DependsSyntaxError("empty depends")
    return tokens

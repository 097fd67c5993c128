"""Argument tables: the wire format of the blob that carries the static arguments of every call of one template.

A table is JSON (UTF-8, stored in the side store under its sha256 like any value):

    {"format": "wfboost.io/argument-table/v1",
     "template": "<the template's name>",
     "inputs": ["<input>", …],          # the inputs the table carries, in the template's order
     "strings": ["…", …],               # every distinct string the rows use, once
     "rows": [{"cells": [<index into strings, one per input>],
               "removed": [[<position in the call's parameters>, {<the parameter without "value">}, <index>]],
               "form": 0|1|2}],                # the call had no `arguments`, `arguments` only, or `parameters`
     "original": {<the template as it was>},
     "copies": ["<template>-2", …]}      # copies made for calls passing other workflow arguments (bundling.py)

`cells` are the values the controller would have substituted for each input (a `{{workflow.parameters.X}}`
argument already resolved); `removed` and `original` are what the call and the template looked like, so that
`wfboost restore` gives back the Workflow exactly (wfboost.shrink.inverse). Which templates get a table, and why
that keeps every value the controller evaluates inline, is wfboost.shrink.bundling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypedDict

import orjson

from wfboost.shrink.refs import CELL_PATTERN, Reference

__all__ = ["FORMAT", "ArgumentTable", "TableError", "TableRow", "cell", "parse_table", "replace_cells"]

FORMAT: Final = "wfboost.io/argument-table/v1"


class TableRow(TypedDict):
    cells: list[int]
    removed: list[list[Any]]  # [position, the parameter without its value, index of its value in strings]
    form: int  # the call had 0: no `arguments`, 1: `arguments` without `parameters`, 2: a `parameters` list


class ArgumentTable(TypedDict):
    format: str
    template: str
    inputs: list[str]
    strings: list[str]
    rows: list[TableRow]
    original: dict[str, Any]
    copies: list[str]


class TableError(ValueError):
    """A blob that is not a well-formed argument table, or a cell it does not have; the message says which."""


def parse_table(reference: Reference, text: str) -> ArgumentTable:
    """The table `text` holds (already checked against `reference`'s digest), its shape checked once here so that a
    lookup is an index and nothing else."""
    try:
        table = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise TableError(f"{reference.text} is not JSON") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise TableError(f"{reference.text} is not a {FORMAT} table")
    inputs, strings, rows = table.get("inputs"), table.get("strings"), table.get("rows")
    if not (isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)
            and isinstance(strings, list) and all(isinstance(s, str) for s in strings)
            and isinstance(rows, list) and isinstance(table.get("template"), str)
            and isinstance(table.get("original"), dict)
            and isinstance(table.setdefault("copies", []), list)):
        raise TableError(f"{reference.text}: a table needs template, inputs, strings, rows and original")
    for row in rows:
        cells = row.get("cells") if isinstance(row, dict) else None
        if not (isinstance(cells, list) and len(cells) == len(inputs)
                and all(isinstance(c, int) and 0 <= c < len(strings) for c in cells)
                and isinstance(row.get("removed"), list)):
            raise TableError(f"{reference.text}: a row without one string per input")
    return table  # type: ignore[return-value]


def cell(table: ArgumentTable, reference: Reference, row: int, name: str) -> str:
    if not 0 <= row < len(table["rows"]):
        raise TableError(f"{reference.text} has no row {row}")
    try:
        column = table["inputs"].index(name)
    except ValueError:
        raise TableError(f"{reference.text} has no input {name!r}") from None
    return table["strings"][table["rows"][row]["cells"][column]]


def replace_cells(text: str, tables: Mapping[Reference, ArgumentTable]) -> str:
    """`text` with every cell (`…#<row>[<input>]`) replaced by its value; KeyError for a table not fetched,
    TableError for a cell the table does not have."""
    def value(match: Any) -> str:
        reference = Reference(int(match[1]), match[2], table=True)
        return cell(tables[reference], reference, int(match[3]), match[4])
    return CELL_PATTERN.sub(value, text)

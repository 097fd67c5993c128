"""Which values of a Workflow only ever reach containers, and so may travel as a reference.

The controller evaluates some values itself (`when`, `withParam`, `depends`, `{{= …}}` expressions, `podSpecPatch`,
retry expressions, output `valueFrom`, memoize keys, synchronization names, hooks, metadata…): those must stay
inline. Others it only substitutes, as text, into a pod's container strings. This module finds, for each workflow
argument (`spec.arguments.parameters[].value`, where Kubeflow v2 puts every component and implementation JSON), whether
*every* use of it is of the second kind. It is deliberately narrow: a use it does not recognise keeps the value
inline. Recognised uses of a parameter `P`:

- `{{P}}` inside a string of a template's main container or script: `args[]`, `command[]`, `env[].value`,
  `script.source` — what the controller copies into the pod (and into `ARGO_TEMPLATE`);
- `{{P}}` as the whole `value` of an argument a DAG task or a step passes to a template of this Workflow (`template:`,
  not `templateRef:`), when that template's input of the same name is itself used only in these ways (followed
  through nested DAGs and steps).

The Workflow's arguments are also the arguments of its entrypoint and of its exit handler (`onExit`, or the `exit`
hook): `executeTemplate(…, execWf.Spec.Arguments, …)` and `GetExitHook(execWf.Spec.Arguments)` in
workflow/controller/operator.go at v3.7.18. Their inputs of the same names are followed like any passed argument.

Anything else keeps the value inline: any other field; an expression (`{{=…}}`, `expression:`) naming `inputs`,
`workflow` or `parameters`; the whole-map forms `{{workflow.parameters}}`, `{{workflow.parameters.json}}`,
`{{inputs.parameters}}`; an `enum` on the argument or the input (the controller checks the value against it); any
`templateRef` or a `workflowTemplateRef` (a template not in this object can read any argument unseen); reference text
already in the Workflow.
Pure: it reads the spec only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from wfboost.shrink.refs import MARK

__all__ = ["TAG", "Analysis", "TextIndex", "analyse_workflow_arguments", "dotted", "expression_field",
           "expression_tags", "go_quotes_as_json", "mentions", "mentions_bare", "only_dollar_tags", "passed_argument",
           "strings", "template_at", "text_index", "uses_in_scope", "uses_reason", "whole_spec_reason"]

# Argo's simple tags allow spaces inside the braces (`{{ inputs.parameters.x }}`).
TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


@dataclass
class Analysis:
    """The verdict for each workflow argument: movable (with the templates whose pods receive it) or why not."""

    # argument name -> the templates that receive it: as an input, or in their container's strings
    movable: dict[str, set[str]] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # argument name -> reason


# Strings that can mention a parameter at all (every token is `workflow.parameters.…` or `inputs.parameters.…`),
# found once per spec and grouped by the template they lie in (None: all of them). A 2,000-task Workflow has over a
# million strings and a few thousand of these: each argument's check reads only these.
TextIndex = dict[str | None, list[tuple[tuple[str | int, ...], str]]]


def text_index(spec: Mapping[str, Any]) -> TextIndex:
    index: TextIndex = {None: []}
    for path, text in strings(spec, ()):
        if "parameters" in text:
            index[None].append((path, text))
            if len(path) >= 2 and path[0] == "templates" and isinstance(path[1], str):
                index.setdefault(path[1], []).append((path, text))
    return index


def analyse_workflow_arguments(spec: Any) -> Analysis:
    analysis = Analysis()
    if not isinstance(spec, Mapping):
        return analysis
    parameters = (spec.get("arguments") or {}).get("parameters") or []
    names: list[str] = [p["name"] for p in parameters if isinstance(p, Mapping) and isinstance(p.get("name"), str)]
    if not names:
        return analysis
    whole = _whole_spec_reason(spec)
    templates = {t["name"]: t for t in spec.get("templates") or [] if isinstance(t, Mapping) and "name" in t}
    enums = {p["name"] for p in parameters if isinstance(p, Mapping) and "enum" in p}
    index = text_index(spec) if not whole else {}
    for name in names:
        if whole:
            analysis.kept[name] = whole
            continue
        if name in enums:
            analysis.kept[name] = "it has an enum the controller checks the value against"
            continue
        receivers: set[str] = set()
        visited: set[tuple[str, str]] = set()
        reason = uses_in_scope(spec, templates, f"workflow.parameters.{name}", None, receivers, visited, index)
        for entry in _argument_receivers(spec):
            if reason is not None:
                break
            reason = _received_reason(spec, templates, entry, name, receivers, visited, index)
        if reason is None:
            analysis.movable[name] = receivers
        else:
            analysis.kept[name] = reason
    return analysis


def _argument_receivers(spec: Mapping[str, Any]) -> list[str | None]:
    """The templates the Workflow's own arguments are passed to; None for one that is not named here.

    The entrypoint, and every exit handler: the Workflow's (`onExit`, `hooks.exit`) and each DAG task's and step's
    (`GetExitHook(execWf.Spec.Arguments)` in workflow/controller/dag.go and steps.go, v3.5.14 to v4.1.2).
    """
    found: list[str | None] = [spec.get("entrypoint") if isinstance(spec.get("entrypoint"), str) else None]
    holders: list[Mapping[str, Any]] = [spec]
    for template in spec.get("templates") or []:
        if not isinstance(template, Mapping):
            continue
        holders.extend(t for t in (template.get("dag") or {}).get("tasks") or [] if isinstance(t, Mapping))
        holders.extend(s for group in template.get("steps") or [] if isinstance(group, list)
                       for s in group if isinstance(s, Mapping))
    for holder in holders:
        if holder.get("onExit"):
            found.append(holder["onExit"] if isinstance(holder["onExit"], str) else None)
        exit_hook = (holder.get("hooks") or {}).get("exit") if isinstance(holder.get("hooks"), Mapping) else None
        if isinstance(exit_hook, Mapping):
            found.append(exit_hook.get("template") if isinstance(exit_hook.get("template"), str) else None)
    return found


def _received_reason(
    spec: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    entry: str | None,
    name: str,
    receivers: set[str],
    visited: set[tuple[str, str]],
    index: TextIndex,
) -> str | None:
    if entry is None or entry not in templates:
        return f"the Workflow's arguments go to a template not defined in this object ({entry or 'unnamed'})"
    declared = [p for p in (templates[entry].get("inputs") or {}).get("parameters") or []
                if isinstance(p, Mapping) and p.get("name") == name]
    if not declared:
        return None
    if "enum" in declared[0]:
        return f"{entry}'s input `{name}` has an enum the controller checks"
    receivers.add(entry)
    if (entry, name) in visited:
        return None
    visited.add((entry, name))
    return uses_in_scope(spec, templates, f"inputs.parameters.{name}", entry, receivers, visited, index)


# Identifiers through which an expression can read every value at once (`toJson(inputs)`, `workflow.parameters`):
# util/expr/env/env.go `GetFuncMap` nests the flat keys into these objects.
_EXPRESSION_READS = re.compile(r"\b(inputs|workflow|parameters)\b|\$env")


def uses_reason(spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]], token: str,
                scope: str) -> str | None:
    """None when every mention of `token` in template `scope` is a container string or a simple pass-through (the
    same test as for a workflow argument; wfboost.shrink.bundling uses it for one template's inputs)."""
    return uses_in_scope(spec, templates, token, scope, set(), set(), {scope: [
        (path, text) for path, text in strings(templates[scope], ("templates", scope)) if "parameters" in text]})


def whole_spec_reason(spec: Mapping[str, Any], *, references_allowed: bool = False) -> str | None:
    """Why nothing in this spec may move at all (it refers to templates elsewhere, it already holds references, an
    expression reads values), or None. `references_allowed`: the spec as stored, whose references wfboost wrote."""
    return _whole_spec_reason(spec, references_allowed)


def expression_field(path: tuple[str | int, ...]) -> bool:
    """A field the controller compiles as an expression: `expression` (hooks, outputs' valueFrom), `fromExpression`
    (artifact arguments: workflow/controller/scope.go resolveArtifact)."""
    return bool(path) and isinstance(path[-1], str) and path[-1].endswith(("expression", "Expression"))


def expression_tags(text: str) -> Iterator[str]:
    """The `{{=…}}` tags of `text` as Argo's template scanner finds them (util/template NewTemplate: `{{` to the next
    `}}`, whatever braces lie between: `{{= toJson({'a': inputs.parameters.x}) }}` is one tag)."""
    position = 0
    while (start := text.find("{{", position)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            return
        tag = text[start + 2:end]
        if tag.lstrip().startswith("="):
            yield tag
        position = end + 2


def _whole_spec_reason(spec: Mapping[str, Any], references_allowed: bool = False) -> str | None:
    if spec.get("workflowTemplateRef"):
        return "the templates are in a WorkflowTemplate (workflowTemplateRef), not in this object"
    for path, text in strings(spec, ()):
        if "templateRef" in path:
            return "a template comes from elsewhere (templateRef): it can read any argument unseen"
        if MARK in text and not references_allowed:
            return "the Workflow already holds reference text: restoring its pods would change it"
        if expression_field(path) and _EXPRESSION_READS.search(text):
            return "an expression field reads values: the controller evaluates it"
        if "{{" in text and any(_EXPRESSION_READS.search(tag) for tag in expression_tags(text)):
            return "an expression reads values: `{{=…}}` is evaluated by the controller"
        if path[:1] not in (("templates",), ("arguments",)) and any(
                tag.strip().startswith("inputs.") for tag in TAG.findall(text)):
            # spec.podSpecPatch, podMetadata, volumes, scheduling fields: the controller substitutes each pod's
            # template inputs into them (workflowpod.go processPodSpecPatch and substitutePodParams, v3.5.14 to v4.1.2)
            return f"{dotted(path)} reads template inputs: the controller substitutes them into every pod"
        for tag in TAG.findall(text):
            if tag in ("workflow.parameters", "workflow.parameters.json"):
                return f"`{{{{{tag}}}}}` hands every argument over at once, as JSON"
    return None


def uses_in_scope(
    spec: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    token: str,
    scope: str | None,
    receivers: set[str],
    visited: set[tuple[str, str]],
    index: TextIndex,
) -> str | None:
    """None when every mention of `token` (in the whole spec, or in template `scope`) is a recognised use."""
    for path, text in index.get(scope, ()):
        if scope is not None and any(tag in ("inputs.parameters", "inputs.parameters.json")
                                     for tag in TAG.findall(text)):
            return f"{dotted(path)}: `{{{{inputs.parameters}}}}` hands every input over at once, as JSON"
        if not _mentions(text, token):
            continue
        reason = _use_reason(path, text, token, spec, templates, receivers, visited, index)
        if reason is not None:
            return reason
    return None


def _use_reason(
    path: tuple[str | int, ...],
    text: str,
    token: str,
    spec: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    receivers: set[str],
    visited: set[tuple[str, str]],
    index: TextIndex,
) -> str | None:
    where = dotted(path)
    if any(not _is_simple(tag, token) for tag in TAG.findall(text) if _mentions(tag, token)) or mentions_bare(
            text, token):
        return f"{where}: used other than as a simple `{{{{{token}}}}}`"
    template = template_at(path, templates)
    if template is None:
        return f"{where}: outside the templates, where the controller reads it"
    rest = path[2:]
    if _container_string(rest):
        receivers.add(template)
        return None
    passed = passed_argument(rest, templates[template])
    if passed is None:
        return f"{where}: a field the controller evaluates or that is not a container's"
    task, argument = passed
    if text.strip() != "{{" + token + "}}" and TAG.fullmatch(text.strip()) is None:
        return f"{where}: passed inside a longer string"
    if "templateRef" in task or not isinstance(task.get("template"), str):
        return f"{where}: passed to a template outside this Workflow"
    target = task["template"]
    if target not in templates:
        return f"{where}: passed to a template this Workflow does not define ({target})"
    declared = [p for p in (templates[target].get("inputs") or {}).get("parameters") or []
                if isinstance(p, Mapping) and p.get("name") == argument]
    if not declared:
        return f"{where}: passed as `{argument}`, which {target} does not declare"
    if "enum" in declared[0]:
        return f"{where}: {target}'s input `{argument}` has an enum the controller checks"
    receivers.add(target)  # its pods' ARGO_TEMPLATE holds the value among its inputs (v3.5)
    if (target, argument) in visited:
        return None
    visited.add((target, argument))
    return uses_in_scope(spec, templates, f"inputs.parameters.{argument}", target, receivers, visited, index)


def _container_string(rest: tuple[str | int, ...]) -> bool:
    """A string the controller copies into the pod's main container as text."""
    match rest:
        case ("container" | "script", "args" | "command", int()):
            return True
        case ("container" | "script", "env", int(), "value"):
            return True
        case ("script", "source"):
            return True
    return False


def passed_argument(rest: tuple[str | int, ...], template: Mapping[str, Any]) -> tuple[Mapping[str, Any], str] | None:
    """(task or step, argument name) when the path is `dag.tasks[i].arguments.parameters[j].value` or
    `steps[g][k].arguments.parameters[j].value`."""
    match rest:
        case ("dag", "tasks", int() as i, "arguments", "parameters", int() as j, "value"):
            task = template["dag"]["tasks"][i]
        case ("steps", int() as g, int() as k, "arguments", "parameters", int() as j, "value"):
            task = template["steps"][g][k]
        case _:
            return None
    argument = task["arguments"]["parameters"][j].get("name")
    return (task, argument) if isinstance(argument, str) else None


def template_at(path: tuple[str | int, ...], templates: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The template a path lies in (paths inside templates are `("templates", <name>, …)`)."""
    if len(path) >= 2 and path[0] == "templates" and isinstance(path[1], str) and path[1] in templates:
        return path[1]
    return None


def strings(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string in `node` with its path; templates are addressed by name (`("templates", name, …)`) and map
    keys are strings too (an annotation's key can hold a tag)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if path == () and key == "templates" and isinstance(value, list):
                for template in value:
                    if isinstance(template, Mapping) and isinstance(template.get("name"), str):
                        yield from strings(template, ("templates", template["name"]))
                    else:
                        yield from strings(template, ("templates", "?"))
                continue
            if isinstance(key, str):
                yield (*path, key, "<key>"), key
            yield from strings(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from strings(item, (*path, index))


def mentions(text: str, token: str) -> bool:
    return _mentions(text, token)


def _mentions(text: str, token: str) -> bool:
    """`token` appears as a whole name (not as the prefix of a longer one: `…components-a` in `…components-ab`)."""
    start = 0
    while (found := text.find(token, start)) >= 0:
        end = found + len(token)
        if end == len(text) or not (text[end].isalnum() or text[end] in "-_."):
            return True
        start = found + 1
    return False


def _is_simple(tag: str, token: str) -> bool:
    return tag == token


def mentions_bare(text: str, token: str) -> bool:
    """A mention outside any `{{…}}` tag (e.g. in an expression's body split across tags, or plain text)."""
    outside = TAG.sub("", text)
    return _mentions(outside, token)


def dotted(path: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "spec." + "".join(parts) if parts else "spec"


def only_dollar_tags(value: str) -> bool:
    """Every `{{…}}` in `value` is closed, holds no other `{{`, and starts with `$` (Kubeflow's own placeholders,
    `{{$}}`, `{{$.inputs.parameters['x']}}`): tags no Argo substitution resolves, so the value reaches a container
    byte for byte. From Argo's source, v3.5.14 to v4.1.2: util/template NewTemplate scans `{{` to the next `}}`;
    kind.go parseTag makes only `=` an expression; simpleReplace looks the trimmed tag up among variable names, none
    of which starts with `$`, and writes an unresolved tag back as it was; validate.go resolveAllVariables ignores
    tags outside its known prefixes. Not in loops: operator.go processItem refuses any unresolved tag, so a looped
    task carrying such a value fails, and moving the value would make it run."""
    position = 0
    while (start := value.find("{{", position)) >= 0:
        end = value.find("}}", start + 2)
        if end < 0:
            return False
        tag = value[start + 2:end]
        if "{{" in tag or not tag.strip().startswith("$"):
            return False
        position = end + 2
    return True


# C0 controls but \b \t \n \f \r, DEL, and lone surrogates: Go writes them as escapes JSON has not. Characters
# past U+FFFF are looked at one by one (only the non-printable ones are).
_UNQUOTABLE = re.compile("[\x00-\x07\x0b\x0e-\x1f\x7f\ud800-\udfff]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def go_quotes_as_json(value: str) -> bool:
    """Argo substitutes a value into a template's JSON with Go's strconv.Quote (util/template simple_template.go);
    the escapes it writes for C0 controls other than \\b \\t \\n \\f \\r, for DEL and for a non-printable
    character past U+FFFF are not JSON, and the substitution then fails ("cannot finish template replacement because
    the result was invalid JSON"). A value that makes it fail inline must not be made to work by moving it."""
    if _UNQUOTABLE.search(value):
        return False
    return all(unicodedata.category(char)[0] in "LMNPS" for char in _ASTRAL.findall(value))

"""`wfboost policy schema|validate|show`: the policy file's JSON Schema, a check of a file, the policy in force."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

import orjson
import yaml

from wfboost.cli.inputs import InputError
from wfboost.cli.options import add_policy_option
from wfboost.cli.policy_file import policy_text, read_policy
from wfboost.policy import Policy, PolicyError, dump_policy, format_duration, load_policy, policy_schema


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("policy", help="the policy file: its schema, a check of a file, the policy in force")
    commands = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    schema = commands.add_parser("schema", help="print the policy's JSON Schema (for editors and CI)")
    schema.set_defaults(handler=_schema)

    validate = commands.add_parser(
        "validate", help="check policy files; every problem is printed on a line of its own",
        description="Exit status 0 when every file is a valid policy, 1 otherwise.",
    )
    validate.add_argument("files", metavar="FILE", nargs="+", help="policy YAML files ('-' reads stdin)")
    validate.set_defaults(handler=_validate)

    show = commands.add_parser(
        "show", help="print the policy in force, every default included",
        description="Without --policy, the built-in default policy (every feature off). With --namespace, also what "
        "memoization does in that namespace after scope, switches and overrides.",
    )
    add_policy_option(show)
    show.add_argument("--namespace", default=None, help="also print the settings in force in this namespace")
    show.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE",
        help="a label of that namespace, for label-gated rules (repeatable)",
    )
    show.set_defaults(handler=_show)


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(orjson.dumps(policy_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        name = "stdin" if path == "-" else path
        try:
            load_policy(policy_text(path))
        except InputError as exc:
            print(exc, file=sys.stderr)
            status = 1
        except PolicyError as exc:
            for message in exc.messages:
                print(f"{name}: {message}", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: valid")
    return status


def _show(args: argparse.Namespace) -> int:
    try:
        policy = read_policy(args.policy)
        labels = _labels(args.label)
    except InputError as exc:
        print(f"wfboost policy show: {exc}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        print(f"wfboost policy show: {args.policy} is invalid:", file=sys.stderr)
        for message in exc.messages:
            print(f"  {message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"wfboost policy show: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(dump_policy(policy))
    if args.namespace is not None:
        sys.stdout.write("---\n" + yaml.safe_dump(_in_namespace(policy, args.namespace, labels), sort_keys=False))
    return 0


def _labels(pairs: list[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--label takes KEY=VALUE, not {pair!r}")
        labels[key] = value
    return labels


def _in_namespace(policy: Policy, namespace: str, labels: dict[str, str] | None) -> dict[str, Any]:
    memoize = policy.memoize_settings_for(namespace, labels)

    def duration(value: timedelta | None) -> str | None:
        return None if value is None else format_duration(value)

    return {
        "namespace": namespace,
        "labels": labels if labels is not None else "unknown (label-gated rules do not match)",
        "inScope": policy.namespace_in_scope(namespace, labels),
        "memoize": {
            "enabled": memoize.enabled,
            "maxStaleness": duration(memoize.max_staleness),
            "maxStalenessLimit": duration(memoize.max_staleness_limit),
            "shareAcrossNamespaces": memoize.share_across_namespaces,
            "allowWritableVolumes": memoize.allow_writable_volumes,
            "optIn": memoize.opt_in,
            "trustImageTags": memoize.trust_image_tags,
            "trustConfigMapsAndSecrets": memoize.trust_config_maps_and_secrets,
            "trustReadOnlyVolumes": memoize.trust_read_only_volumes,
        },
    }

"""docs/benchmarks.md and its plots, from one `make bench` run: every number beside the floor of the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wfboost_dev.bench import etcd_run
from wfboost_dev.bench.loadgen import Result

COMMAND = "make bench"


def write(results: dict[str, Any], out: Path) -> str:
    plots = _plots(results, out)
    text = "\n".join(_document(results, plots)) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.md").write_text(text)
    return text


def _document(r: dict[str, Any], plots: list[str]) -> list[str]:
    m, v = r["machine"], r["versions"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{COMMAND}` (wfboost_dev/bench) in {r['elapsed_s']:.0f} s; every wfboost number stands beside the "
        "floor measured in the same run with the same load generator. Re-run it on your machine: absolute numbers "
        "depend on it, ratios much less.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; Linux {m['kernel']}; Python {m['python']}; "
        f"Valkey {v['valkey']}; wrk {v['wrk']}, hey {v['hey']}. The load generator, the server, Valkey and the "
        "side store share these cores.",
        "",
        "The floor (`wfboost_dev/bench/floor.py`) is the same aiohttp server, TLS and worker model as `wfboost serve`, "
        "answering \"allowed\" after parsing the review: what any webhook in Python costs. wfboost runs as users run "
        "it: `wfboost serve` as a process, a real Valkey, a real side store.",
        "",
        "## Closed loop (wrk, keep-alive HTTPS, one worker process)",
        "",
        "8 connections for pods, 2 for Workflows (a 2,000-task CREATE is planned in ~1 s of CPU). Each hit is another "
        "node (the wrk script gives each request another Workflow uid): a node served a hit before is answered "
        "`rerun`, and a repeated body would measure that path instead. The task results are the wait container's "
        "UPDATEs: with small outputs (no API call, no side store), and with a 64 KiB output that the Workflow's "
        "CREATE found movable (its Workflow read once per 15 s, the value PUT to the side store on every request: "
        "content-addressed, so each PUT after the first stores nothing new).",
        "",
        "| path | floor req/s | wfboost req/s | × floor | p50 ms | p99 ms | p99.9 ms | floor p50 / p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, pair in r["paths"].items():
        lines.append(_closed_row(name, pair["floor"], pair["wfboost"]))
    lines += [
        "",
        "## Fixed offered load (hey, keep-alive HTTPS)",
        "",
        "hey throttles each connection to its share of the rate and sends one body, so the hit path (another node per "
        "request) is paced with wrk below; it records latency to 0.1 ms. Its workers' tickers start together: "
        "with 8 connections the requests arrive in bursts of 8, and the last of a burst waits for the seven before "
        "it, which is most of the latency far from saturation (compare the one-connection row at the same rate: "
        "there it is one request's own time).",
        "",
        "| path | offered req/s | connections | achieved | p50 ms | p99 ms | p99.9 ms | floor p50 / p99 / p99.9 ms | "
        "p50 × floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_rate in r["rates"].items():
        for (rate, connections), pair in by_rate.items():
            floor, ours = pair["floor"], pair["wfboost"]
            lines.append(
                f"| {name} | {rate} | {connections} | {ours.rate:,.0f} | {ours.p50_ms:.1f} | {ours.p99_ms:.1f} | "
                f"{ours.p999_ms:.1f} | "
                f"{floor.p50_ms:.1f} / {floor.p99_ms:.1f} / {floor.p999_ms:.1f} | {_ratio(ours.p50_ms, floor.p50_ms)} |"
            )
    if r.get("paced"):
        lines += [
            "",
            "## Near a fixed load, a body per request (wrk paced)",
            "",
            "Each hit must be another node, which hey (one body) cannot send; wrk pauses each connection "
            "connections/rate before each request (its `delay()` hook), so the rate achieved is a little under the "
            "one offered (the pause plus the answer's own time), for the floor and for wfboost alike. Latency is "
            "the answer's own, to 0.01 ms.",
            "",
            "| path | offered req/s | connections | achieved | p50 ms | p99 ms | p99.9 ms | "
            "floor p50 / p99 / p99.9 ms | p99 × floor |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, by_rate in r["paced"].items():
            for (rate, connections), pair in by_rate.items():
                floor, ours = pair["floor"], pair["wfboost"]
                lines.append(
                    f"| {name} | {rate} | {connections} | {ours.rate:,.0f} | {ours.p50_ms:.2f} | {ours.p99_ms:.2f} | "
                    f"{ours.p999_ms:.2f} | {floor.p50_ms:.2f} / {floor.p99_ms:.2f} / {floor.p999_ms:.2f} | "
                    f"{_ratio(ours.p99_ms, floor.p99_ms)} |")
    lines += ["", "## Worker processes (`wfboost serve --workers N`, the floor with the same N)", "",
              "| path | workers | floor req/s | wfboost req/s | × floor | p99 ms |", "|---|---|---|---|---|---|"]
    for name, pair in r["workers"].items():
        label, workers = (name.removesuffix(" (1 worker)"), 1) if name.endswith("(1 worker)") else (name, 2)
        floor, ours = pair["floor"], pair["wfboost"]
        lines.append(f"| {label} | {workers} | {floor.rate:,.0f} | {ours.rate:,.0f} | "
                     f"{_ratio(ours.rate, floor.rate)} | {ours.p99_ms:.1f} |")
    lines += _goals(r)
    memory = r["redis_memory"]
    lines += ["", "## Redis memory", "",
              f"{memory['entries']:,} entries recorded through the store's own write path (one parameter, one "
              f"artifact each, as a typical step): {memory['bytes'] / 2**20:,.1f} MiB of `used_memory`, "
              f"{memory['per_entry']:,.0f} bytes per entry.", ""]
    lines += _shrink_section(r["shrink"])
    if "etcd_run" in r:
        lines += ["", "## etcd bytes of a reference run", "", *etcd_run.report(r["etcd_run"])]
    lines += ["", "## Status compression", "", "```", *r["status"], "```", "", "## Latching", "", "```", *r["latch"],
              "```", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}](benchmarks/{name})" for name in plots] + [""]
    lines += ["## Not measured yet", "",
              "- a true open loop for hits (a fixed schedule whatever the answers' times): wrk paces per connection."]
    return lines


def _closed_row(name: str, floor: Result, ours: Result) -> str:
    return (f"| {name} | {floor.rate:,.0f} | {ours.rate:,.0f} | {_ratio(ours.rate, floor.rate)} | {ours.p50_ms:.2f} | "
            f"{ours.p99_ms:.2f} | {ours.p999_ms:.2f} | {floor.p50_ms:.2f} / {floor.p99_ms:.2f} | "
            f"{ours.errors + floor.errors} |")


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}" if floor else "-"


def _shrink_section(shrink: dict[str, Any]) -> list[str]:
    lines = ["## Shrinking", "",
             "Kubeflow-shaped workflows as Kubeflow v2 compiles them (wfboost_dev/argosim/kubeflow.py), planned as the "
             "webhook plans them at CREATE: with the default policy (values of 4 KiB and more move), and with "
             "`shrink.controllerVersion: 3.7.10` or later, where values over 128 KiB move too (Argo then offloads long "
             "container arguments to a ConfigMap; Kubeflow's root driver gets the whole pipeline spec as one). Both "
             "use argument tables (docs/shrinking.md). etcd refuses more than 1,572,864 bytes; at 3,000 tasks the "
             "root driver's spec alone is over the 1 MiB a ConfigMap holds, so it stays inline.", "",
             "| tasks | as compiled | defaults | plan s | controllerVersion ≥ 3.7.10 | plan s |",
             "|---|---|---|---|---|---|"]
    for row in shrink["kubeflow"]:
        lines.append(f"| {row['tasks']:,} | {row['before']:,} | {row['defaults']:,} | {row['defaults_s']:.2f} | "
                     f"{row['tables']:,} | {row['tables_s']:.2f} |")
    corpus = shrink["corpus"]
    lines += [""]
    if not corpus["defaults"]["present"]:
        return [*lines, f"The corpus was not at {corpus['defaults']['path']}: no corpus table."]
    lines += ["Every Workflow, WorkflowTemplate and CronWorkflow of the corpus (../shared/corpus): with the defaults "
              "(objects under 64 KiB are left alone), and with every threshold at its lowest (what could move).", "",
              "| corpus folder | objects | shrunk (defaults) | bytes before | after (defaults) | shrunk (lowest) | "
              "after (lowest) |", "|---|---|---|---|---|---|---|"]
    lowest = corpus["lowest"]["folders"]
    for folder, tally in corpus["defaults"]["folders"].items():
        if tally["objects"]:
            low = lowest[folder]
            lines.append(f"| {folder} | {tally['objects']} | {tally['shrunk']} | {tally['before']:,} | "
                         f"{tally['after']:,} | {low['shrunk']} | {low['after']:,} |")
    return lines


def _plots(r: dict[str, Any], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder = out / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, by_rate in r["rates"].items():
        keys = sorted(k for k in by_rate if k[1] == 8)
        rates = [k[0] for k in keys]
        axis.plot(rates, [by_rate[k]["wfboost"].p99_ms for k in keys], marker="o", label=f"wfboost {name}, p99")
        axis.plot(rates, [by_rate[k]["wfboost"].p50_ms for k in keys], marker=".", label=f"wfboost {name}, p50")
    first = next(iter(r["rates"].values()))
    keys = sorted(k for k in first if k[1] == 8)
    rates = [k[0] for k in keys]
    axis.plot(rates, [first[k]["floor"].p99_ms for k in keys], "k--", label="floor, p99")
    axis.plot(rates, [first[k]["floor"].p50_ms for k in keys], "k:", label="floor, p50")
    _finish(plt, figure, axis, ("offered load (req/s)", "latency (ms)",
                                 "Admission latency vs offered load (hey, 8 connections)"),
            folder / "latency-vs-load.png")
    figure, axis = plt.subplots(figsize=(7, 4))
    rows = r["shrink"]["kubeflow"]
    axis.plot([x["tasks"] for x in rows], [x["before"] / 2**20 for x in rows], marker="o", label="as compiled")
    axis.plot([x["tasks"] for x in rows], [x["defaults"] / 2**20 for x in rows], marker="o",
              label="stored, default policy")
    axis.plot([x["tasks"] for x in rows], [x["tables"] / 2**20 for x in rows], marker="o",
              label="stored, controllerVersion ≥ 3.7.10")
    axis.axhline(1.5, color="red", linestyle="--", label="etcd's request limit (1.5 MiB)")
    _finish(plt, figure, axis, ("Kubeflow-shaped tasks", "Workflow size (MiB)", "Workflow bytes vs tasks"),
            folder / "bytes-vs-tasks.png")
    return ["latency-vs-load.png", "bytes-vs-tasks.png"]


def _finish(plt: Any, figure: Any, axis: Any, labels: tuple[str, str, str], path: Path) -> None:
    x_label, y_label, title = labels
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _goals(r: dict[str, Any]) -> list[str]:
    """The issue's goals beside what this run measured, and where the miss path's CPU goes."""
    rows: list[tuple[str, str, bool]] = []

    def closed(name: str, least: float) -> None:
        pair = r["paths"].get(name)
        if pair:
            ratio = pair["wfboost"].rate / pair["floor"].rate
            rows.append((f"{name}, one worker: ≥ {least}× the floor's throughput", f"{ratio:.2f}×", ratio >= least))

    closed("pod CREATE, miss", 0.4)
    closed("pod CREATE, hit", 0.3)
    for name, table in (("pod CREATE, miss", r["rates"]), ("pod CREATE, hit", r.get("paced") or {})):
        pair = (table.get(name) or {}).get((500, 8))
        if pair:
            ratio = pair["wfboost"].p99_ms / pair["floor"].p99_ms
            rows.append((f"{name} at 500 req/s: p99 ≤ 2× the floor's", f"{ratio:.2f}×", ratio <= 2))
    for name in ("pod CREATE, miss", "pod CREATE, hit"):
        one, two = r["workers"].get(name + " (1 worker)"), r["workers"].get(name)
        if one and two and one is not two:
            ratio = two["wfboost"].rate / one["wfboost"].rate
            rows.append((f"{name}: 2 workers ≥ 1.4× the throughput of 1", f"{ratio:.2f}×", ratio >= 1.4))
    lines = ["", "## Goals", "", "| goal | this run | met |", "|---|---|---|"]
    lines += [f"| {goal} | {value} | {'yes' if met else '**no**'} |" for goal, value, met in rows]
    lines.append("| status compression: ≥ 2× Go-default gzip's speed at ≥ 0.97× its ratio | see Status compression "
                 "(zlib-ng level 5 row) | |")
    found = r.get("profile") or {}
    if "parts" in found:
        lines += ["", f"Where a miss spends its CPU (py-spy on the one-worker webhook under the closed loop above, "
                      f"{found['samples']:,} samples; a sample counts for every part its stack passes through):", "",
                  "| part | share of samples |", "|---|---|"]
        lines += [f"| {what} | {share:.0%} |" for what, share in found["parts"]]
    elif found:
        lines += ["", f"No profile: {found.get('skipped')}."]
    return lines

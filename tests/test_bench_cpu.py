"""`make bench-cpu` measures what it says: each pod path answers as its name says (a miss misses, a hit hits, a pod
where memoization is off passes through), every time, and a time per admission is printed for each."""

from __future__ import annotations

import re

import pytest

from wfboost_dev.bench.cpu import main


def test_each_pod_path_is_the_path_it_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--admissions", "40"]) == 0
    lines = capsys.readouterr().out.splitlines()
    found = {m.group(1): (float(m.group(2)), m.group(3)) for line in lines
             if (m := re.fullmatch(r"(pod CREATE, [a-z-]+): (\d+) µs CPU, \d+ µs wall per admission \((.*)\)", line))}
    assert set(found) == {"pod CREATE, pass-through", "pod CREATE, miss", "pod CREATE, hit"}
    assert found["pod CREATE, miss"][1] == "miss_no_entry 40"
    assert found["pod CREATE, hit"][1] == "hit 40"
    assert found["pod CREATE, pass-through"][1] == "memoize_off 40"  # a namespace memoization is not on in
    assert all(cpu > 0 for cpu, _ in found.values())


def test_a_bad_count_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--admissions", "0"]) == 2
    assert capsys.readouterr().err.strip() == "bench-cpu: --admissions must be at least 1"

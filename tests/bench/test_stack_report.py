"""The stack bench's figures: the restarts against the 30 s goal, the idle memory's totals, the
results file and the chart, the table and the arguments (no service: synthetic rounds)."""

from __future__ import annotations

import json

from PIL import Image

from bench import report
from bench.stack_bench import healthy_after, parse_args, stack_table


def results(healthy, complete=True, stack_rss=900.0):
    return {
        "bench": "stack",
        "started": "2026-12-01T17:00:00+00:00",
        "host": {"cpus": 2, "load_at_start": 1.0},
        "settings": {"idle": 60.0, "restarts": len(healthy), "quick": False},
        "complete": complete,
        "first_up_s": 41.0,
        "restarts": [{"healthy_s": h, "up_s": (h or 30.0) + 5.0} for h in healthy],
        "noop_up_s": 0.7,
        "idle": {
            "kafka": {"processes": 1, "rss_mib": 300.0, "pss_mib": 280.0},
            "airflow-scheduler": {"processes": 4, "rss_mib": 600.0, "pss_mib": 250.0},
        },  # fmt: skip
        "idle_stack_rss_mib": stack_rss,
        "left_after_down": 0,
    }


def test_goal_needs_every_restart_within_30_s():
    assert report.summarize_stack(results([14.0, 22.5, 30.0]))["goal_met"] is True
    assert report.summarize_stack(results([14.0, 30.5, 20.0]))["goal_met"] is False
    assert report.summarize_stack(results([14.0, None]))["goal_met"] is False  # a round without its figure
    assert report.summarize_stack(results([]))["goal_met"] is False  # nothing measured, nothing met


def test_idle_totals_and_the_stacks_rss():
    summary = report.summarize_stack(results([14.0]))
    assert summary["idle_total"] == {"processes": 5, "rss_mib": 900.0, "pss_mib": 530.0}
    assert summary["idle_stack_rss_mib"] == 900.0 and summary["up_s"] == [19.0]


def test_up_output_gives_its_own_healthy_figure():
    assert healthy_after("[streamlab] kafka up\n[streamlab] all services healthy in 13.5 s\n") == 13.5
    assert healthy_after("something else") is None


def test_results_file_chart_and_table(tmp_path):
    data = results([14.0, 16.2, 15.1])
    data["summary"] = report.summarize_stack(data)
    path = tmp_path / "stack.json"
    report.write_json(path, data)
    assert report.main([str(path)]) == 0
    assert json.loads(path.read_text())["summary"]["goal_met"] is True
    with Image.open(tmp_path / "stack.png") as img:
        assert img.format == "PNG" and img.size[0] > 800
    lines = stack_table(data)
    assert any("14.0, 16.2, 15.1 s (goal 30 s: met)" in line for line in lines)
    assert any("the stack's RSS, each page once: 900 MiB" in line for line in lines)
    incomplete = results([], complete=False, stack_rss=None)
    report.plot_stack(report.summarize_stack(incomplete), tmp_path / "i.png", report.stack_title(incomplete))
    assert "interrupted" in report.stack_title(incomplete)


def test_quick_mode():
    quick = parse_args(["--quick"])
    assert quick.restarts == 1 and quick.idle == 5.0 and quick.out is None
    assert parse_args([]).out.name == "results"

"""The PSI commands' rendering: the progress bar on a terminal, and the run list that
shows the answering member its runs."""

from __future__ import annotations

import io
from typing import Any

from node.commands.psi import Bar, progress_line, run_lines


def a_run(**kw: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "run_id": "0123456789abcdef0123456789abcdef",
        "role": "responder",
        "peer": "police-0",
        "case_id": "HZ-1",
        "entity_type": "phone",
        "state": "running",
        "outcome": None,
        "message": "",
        "own_size": 100_000,
        "peer_size": 100_000,
        "result_size": None,
        "progress": {
            "done": 150_000,
            "total": 300_000,
            "own_sent": 100_000,
            "peer_received": 60_000,
            "peer_tagged": 40_960,
            "tags_received": 9_040,
        },
    }
    return run | kw


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_counts_each_side() -> None:
    line = progress_line(a_run(), width=10)
    assert line.startswith("[#####.....]  50%  ours sent 100,000/100,000")
    assert "theirs tagged 40,960/100,000  tags back 9,040/100,000" in line


def test_the_bar_is_redrawn_on_a_terminal_only_and_only_for_large_sets() -> None:
    out = Terminal()
    bar = Bar(out)
    bar.draw(a_run())
    bar.draw(a_run(state="recording"))
    bar.end()
    text = out.getvalue()
    assert text.count("\r[") == 2 and text.endswith("recording\x1b[K\n")
    small = Terminal()
    Bar(small).draw(a_run(own_size=10, peer_size=10))
    piped = io.StringIO()
    Bar(piped).draw(a_run())
    assert small.getvalue() == "" and piped.getvalue() == ""


def test_the_run_list_shows_progress_and_outcomes() -> None:
    answer = {
        "answering": True,
        "answer_sets": {"phone": {"size": 100_000, "prepared": True}},
        "runs": [
            a_run(),
            a_run(state="completed", outcome="completed", result_size=10_000),
            a_run(state="failed", outcome="invalid_point", message="point 7 of 9"),
        ],
    }
    lines = run_lines(answer)
    assert lines[0] == "answering: yes; answer sets: phone 100,000"
    assert lines[1].startswith("01234567 responder police-0     case HZ-1 phone running\n  [")
    assert lines[2].endswith("completed 10,000 in common")
    assert lines[3].endswith("failed invalid_point: point 7 of 9")

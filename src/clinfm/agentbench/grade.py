"""Graders by code: an outcome passes only when it says what the store says (or abstains where the record is
silent) and writes exactly what the task asked, nothing more.

* Unanswerable task: passes when the agent abstains and writes nothing.
* Answerable task: an abstention fails. Query tasks need the answer (numbers within the task's tolerance, times
  as the same instant, text case-insensitively) and no write at all (MedAgentBench: read-only tasks fail on any
  POST). Action tasks need each expected write matched by one accepted POST of that type whose fields hold the
  expected values, and no other POST.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from clinfm.agentbench.tasks import PostSpec, Task


@dataclass(slots=True)
class Outcome:
    """What an agent did on one task."""

    task_id: str
    answer: list[Any] | None = None
    abstained: bool = False
    citations: list[str] = field(default_factory=list)
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (resource type, body) accepted
    steps: int = 0
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Grade:
    success: bool
    reason: str


def grade(task: Task, out: Outcome) -> Grade:
    if not task.answerable:
        if out.posts:
            return Grade(False, f"wrote {len(out.posts)} resource(s) on a read-only task")
        return Grade(True, "abstained") if out.abstained else Grade(False, f"answered {out.answer!r}; the record does not say")
    if out.abstained:
        return Grade(False, "abstained on an answerable task")
    if task.kind == "query":
        if out.posts:
            return Grade(False, f"wrote {len(out.posts)} resource(s) on a read-only task")
        if not answers_match(task.answer or [], out.answer, task.tolerance):
            return Grade(False, f"answer {out.answer!r} is not {task.answer!r}")
        return Grade(True, "correct answer")
    return _grade_posts(task.posts, out.posts)


def _grade_posts(expected: list[PostSpec], posts: list[tuple[str, dict[str, Any]]]) -> Grade:
    if len(posts) != len(expected):
        return Grade(False, f"{len(posts)} write(s), expected {len(expected)}")
    left = list(posts)
    for spec in expected:
        hit = next((p for p in left if p[0] == spec.resource_type and post_matches(spec, p[1])), None)
        if hit is None:
            wrong = [k for p in left if p[0] == spec.resource_type for k, v in spec.checks.items()
                     if not _holds(values_at(p[1], k), v)]  # fmt: skip
            return Grade(False, f"no {spec.resource_type} write matches; fields off: {sorted(set(wrong)) or 'type'}")
        left.remove(hit)
    return Grade(True, "expected write(s) made" if expected else "correctly wrote nothing")


def post_matches(spec: PostSpec, body: dict[str, Any]) -> bool:
    return all(_holds(values_at(body, path), want) for path, want in spec.checks.items())


def values_at(obj: Any, path: str) -> list[Any]:
    """Values at a dotted path; ``name[]`` walks every element of a list (``code.coding[].code``)."""
    current = [obj]
    for part in path.split("."):
        nxt = []
        many = part.endswith("[]")
        key = part[:-2] if many else part
        for node in current:
            if isinstance(node, dict) and key in node:
                value = node[key]
                if many and isinstance(value, list):
                    nxt.extend(value)
                elif not many:
                    nxt.append(value)
        current = nxt
    return current


def _holds(found: list[Any], want: Any) -> bool:
    return any(value_equal(want, f, 1e-6) for f in found)


def answers_match(expected: list[Any], got: list[Any] | None, tolerance: float) -> bool:
    if got is None or len(got) != len(expected):
        return False
    return all(value_equal(e, g, tolerance) for e, g in zip(expected, got))


def value_equal(expected: Any, got: Any, tolerance: float) -> bool:
    e_num, g_num = _as_number(expected), _as_number(got)
    if e_num is not None:
        if g_num is None:
            return False
        allowed = tolerance if tolerance >= 0.1 else tolerance * max(1.0, abs(e_num))
        return abs(e_num - g_num) <= allowed + 1e-12
    e_t, g_t = _as_instant(expected), _as_instant(got)
    if e_t is not None:
        return g_t is not None and e_t == g_t
    return str(expected).strip().lower() == str(got).strip().lower()


def _as_number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x.strip())
        except ValueError:
            return None
    return None


def _as_instant(x: Any) -> dt.datetime | None:
    if not isinstance(x, str) or len(x) < 10 or x[4:5] != "-":
        return None
    try:
        t = dt.datetime.fromisoformat(x.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)

"""``headwater up`` restarts a crashed service or worker, but not one stuck in a crash loop."""

from __future__ import annotations

from headwater.lifecycle import RestartBudget


def test_restarts_are_allowed_up_to_the_limit_per_window_and_per_child() -> None:
    now = [0.0]
    budget = RestartBudget(limit=3, window_s=60.0, clock=lambda: now[0])
    assert [budget.allow("ingest") for _ in range(4)] == [True, True, True, False]
    assert budget.allow("loader-worker"), "another child has its own budget"
    now[0] = 61.0
    assert budget.allow("ingest"), "restarts older than the window no longer count"

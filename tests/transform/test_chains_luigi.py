"""Headwater's chains behave as Luigi does: the same A -> B -> C chain, B failing the first time, run three times
in Luigi's local scheduler and in Headwater, gives the same outcome run by run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import luigi

from services.transform.settings import TransformSettings
from tests.transform.chain_helpers import abc_params, background_worker, fast, settled, states, submit, trace

Outcome = tuple[str, list[str], list[str]]  # (run state, tasks that ran, tasks complete afterwards)


def luigi_outcomes(workdir: Path) -> list[Outcome]:
    """Run C three times in Luigi's local scheduler; B fails while ``broken`` exists (removed after run 1)."""
    ran: list[str] = []
    broken = workdir / "broken"
    broken.touch()

    class A(luigi.Task):
        def output(self) -> Any:
            return luigi.LocalTarget(str(workdir / "a.txt"))

        def run(self) -> None:
            ran.append("A")
            with self.output().open("w") as out:
                out.write("a")

    class B(luigi.Task):
        def requires(self) -> Any:
            return A()

        def output(self) -> Any:
            return luigi.LocalTarget(str(workdir / "b.txt"))

        def run(self) -> None:
            ran.append("B")
            if broken.exists():
                raise RuntimeError("B is broken")
            with self.input().open() as source, self.output().open("w") as out:
                out.write(source.read() + "b")

    class C(luigi.Task):
        def requires(self) -> Any:
            return B()

        def output(self) -> Any:
            return luigi.LocalTarget(str(workdir / "c.txt"))

        def run(self) -> None:
            ran.append("C")
            with self.input().open() as source, self.output().open("w") as out:
                out.write(source.read() + "c")

    outcomes: list[Outcome] = []
    for run in range(3):
        before = len(ran)
        result = luigi.build([C()], local_scheduler=True, detailed_summary=True, log_level="CRITICAL")
        state = "DONE" if result.status.name.startswith("SUCCESS") else "FAILED"  # LuigiStatusCode
        complete = sorted(name for name, task in (("A", A()), ("B", B()), ("C", C())) if task.complete())
        outcomes.append((state, ran[before:], complete))
        if run == 0:
            broken.unlink()  # the fix
    return outcomes


async def headwater_outcomes(
    client: httpx.AsyncClient, headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> list[Outcome]:
    """Run CTask three times in Headwater; BTask fails while ``broken`` exists (removed after run 1)."""
    broken = tmp_path / "broken"
    broken.touch()
    params = abc_params(tmp_path, fail_file=str(broken))
    outcomes: list[Outcome] = []
    async with background_worker(fast(settings)):
        for run in range(3):
            before = len(trace(tmp_path))
            submitted = await submit(client, headers, "CTask", params)
            body = await settled(client, headers, submitted["target"])
            complete = sorted(task[0] for task, state in states(body).items() if state == "DONE")
            outcomes.append((body["job_status"], trace(tmp_path)[before:], complete))
            if run == 0:
                broken.unlink()
    return outcomes


async def test_a_resumed_chain_has_the_outcomes_luigi_gives(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> None:
    (tmp_path / "luigi").mkdir()
    (tmp_path / "headwater").mkdir()
    expected = luigi_outcomes(tmp_path / "luigi")  # in the main thread: Luigi's worker installs signal handlers
    actual = await headwater_outcomes(app_client, admin_headers, settings, tmp_path / "headwater")

    assert expected == [
        ("FAILED", ["A", "B"], ["A"]),  # C not built, B failed, A built
        ("DONE", ["B", "C"], ["A", "B", "C"]),  # B and C built, A not rerun
        ("DONE", [], ["A", "B", "C"]),  # nothing to do
    ]
    assert actual == expected

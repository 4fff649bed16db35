"""``headwater dlq list|redrive``: what the mesh's dead-letter queues hold, and putting it back once fixed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from headwater import ui
from headwater.config import CliSettings
from headwater.mesh import adopt_running_mesh_environment
from shared.settings import QUEUES

if TYPE_CHECKING:
    from shared.deadletter import DeadLetter

T = TypeVar("T")
app = typer.Typer(help="Inspect and redrive the SQS dead-letter queues.", no_args_is_help=True)
QueueOption = Annotated[
    str | None, typer.Option("--queue", "-q", help=f"one queue ({', '.join(QUEUES)}); all when omitted")
]


def _settings() -> CliSettings:
    """Return settings pointing at the running mesh's AWS endpoint and prefix when one runs."""
    adopt_running_mesh_environment(CliSettings())
    return CliSettings()


def _queues(queue: str | None) -> list[str]:
    if queue is None:
        return list(QUEUES)
    if queue not in QUEUES:
        raise ui.fail(f"unknown queue {queue!r}: one of {', '.join(QUEUES)}")
    return [queue]


# aiobotocore is imported only when a dlq command runs: the CLI's other commands start faster without it.
async def _list(settings: CliSettings, names: list[str]) -> list[DeadLetter]:
    from shared.aws import AwsClients
    from shared.deadletter import DeadLetter, list_dead_letters

    async with AwsClients(settings) as aws:
        letters = await list_dead_letters(await aws.get("sqs"), [settings.queue(n) for n in names])
    # Show the logical queue name, as the commands take it.
    by_full = {settings.queue(n): n for n in names}
    return [DeadLetter(by_full[x.queue], x.message_id, x.receive_count, x.summary) for x in letters]


async def _redrive(settings: CliSettings, names: list[str]) -> dict[str, int]:
    from shared.aws import AwsClients
    from shared.deadletter import redrive

    async with AwsClients(settings) as aws:
        sqs = await aws.get("sqs")
        return {name: await redrive(sqs, settings.queue(name)) for name in names}


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run one AWS call chain; a missing queue or unreachable endpoint is a one-line error, not a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return asyncio.run(work)
    except ClientError as exc:
        raise ui.fail(
            f"dlq: {exc.response.get('Error', {}).get('Message') or exc} (run `headwater bootstrap`?)"
        ) from exc
    except BotoCoreError as exc:
        raise ui.fail(f"dlq: {exc}") from exc


@app.command("list")
def list_command(queue: QueueOption = None, as_json: ui.JsonOption = False) -> None:
    """List the messages held in the dead-letter queues (queue, message id, receive count, body summary)."""
    letters = _run(_list(_settings(), _queues(queue)))
    rows: list[Any] = [(x.queue, x.message_id, x.receive_count, x.summary) for x in letters]
    ui.emit([x.as_dict() for x in letters], as_json, ui.table(("queue", "message id", "receives", "body"), rows))


@app.command("redrive")
def redrive_command(queue: QueueOption = None, as_json: ui.JsonOption = False) -> None:
    """Move the dead-letter messages back to their queue (once the cause is fixed) for another try."""
    moved = _run(_redrive(_settings(), _queues(queue)))
    ui.emit(moved, as_json, ui.table(("queue", "redriven"), sorted(moved.items())))


def register(root: typer.Typer) -> None:
    """Add ``headwater dlq`` to the CLI."""
    root.add_typer(app, name="dlq")

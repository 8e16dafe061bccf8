"""What every command module shares: the consoles, the progress bar, error exits, and the option groups
(engine options, ingest options) written once and expanded into each command's signature by :func:`options`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, get_type_hints

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clinfm.engine import Engine, EngineKind

console = Console()
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    """End the command: ``message`` on stderr, exit status ``code`` (2: a bad request, 1: a refusal or failure)."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@contextmanager
def errors_exit(*kinds: type[BaseException], code: int = 2) -> Iterator[None]:
    """Exceptions of ``kinds`` end the command with their message and exit status ``code``."""
    try:
        yield
    except kinds as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code) from exc


Update = Callable[[int, "int | None"], None]
"""``update(done, total)``; a ``total`` of None leaves the bar's length open."""


@contextmanager
def progress_bar(label: str, unit: str, total: int | None = None) -> Iterator[Update]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    with Progress(
        TextColumn(f"[bold]{label}[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
        TimeElapsedColumn(), console=err,
    ) as progress:  # fmt: skip
        bar = progress.add_task(label, total=total)

        def update(done: int, total: int | None = total) -> None:
            progress.update(bar, completed=done, total=total)

        yield update


def parse_time(value: str, name: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        fail(f"{name} {value!r} is not a date (expected YYYY-MM-DD or an ISO date-time)")
        raise AssertionError from exc  # unreachable: fail() raises


# --- options shared by several commands --------------------------------------------------------------------
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder to write the MEDS dataset to (replaced atomically).")]
ActorOpt = Annotated[str, typer.Option("--actor", help="Who is acting (a registered user, recorded in the audit log).")]
OrgOpt = Annotated[str, typer.Option("--org", help="Organization (tenant).")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Model config: a YAML path or a packaged size (fm-tiny, fm-small, fm-medium); default $CLINFM_MODEL_CONFIG, else fm-small.")]  # fmt: skip
TaskOpt = Annotated[str, typer.Option("--task", help="Task name (a packaged task, or NAME.yaml in $CLINFM_TASKS_DIR) or a YAML path.")]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """Where a parallel job runs (``--workers``, ``--engine``, ``--ray-address``)."""

    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes (or Ray CPUs), one task each.")] = 1
    engine: Annotated[str, typer.Option("--engine", help="local (processes) or ray (pip install 'clinfm\\[ray]').")] = "local"
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Existing Ray cluster (default: start one).")] = None

    def build(self) -> Engine:
        """The :class:`~clinfm.engine.Engine` these options name; a bad value exits with status 2."""
        kind: EngineKind = "ray" if self.engine == "ray" else "local"
        if self.engine not in ("local", "ray"):
            fail(f"--engine {self.engine!r} is not one of local, ray")
        try:
            return Engine(kind, self.workers, self.ray_address)
        except ValueError as exc:
            fail(str(exc))
            raise AssertionError from exc  # unreachable


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    """Where an ingest writes and how it shards and splits (``--out``, ``--shards``, ``--seed``)."""

    out: OutOpt
    shards: Annotated[int | None, typer.Option("--shards", min=1, help="Output shards (default: by input size).")] = None
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/tuning/held_out split.")] = 0


def options(fn: F) -> F:
    """Let a command take option groups: each parameter typed as one of the dataclasses above is replaced,
    for Typer, by the dataclass's fields, and rebuilt into the dataclass when the command runs."""
    signature = inspect.signature(fn)
    hints = get_type_hints(fn, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    for p in signature.parameters.values():
        kind = hints.get(p.name)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            groups[p.name] = kind
            field_hints = get_type_hints(kind, include_extras=True)
            for f in dataclasses.fields(kind):
                default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
                params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                annotation=field_hints[f.name]))  # fmt: skip
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)))

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        for name, kind in groups.items():
            kwargs[name] = kind(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(kind)})
        return fn(**kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return command  # type: ignore[return-value]

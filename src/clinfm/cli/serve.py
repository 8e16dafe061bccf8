"""``clinfm serve``: the API and the clinician web page."""

from __future__ import annotations

from typing import Annotated

import typer

from clinfm.cli.common import console, fail


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Start the API (REST + OpenAPI, CDS Hooks, FHIR) and the clinician web page. Settings: CLINFM_* variables."""
    from pydantic import ValidationError

    from clinfm.serve import ServeSettings, run

    try:
        settings = ServeSettings()
    except ValidationError as exc:
        fail(str(exc))
    console.print(f"Web page: http://{host}:{port}/   API docs: http://{host}:{port}/docs")
    run(host, port, settings)


def register(app: typer.Typer) -> None:
    app.command()(serve)

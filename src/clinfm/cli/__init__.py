"""The ``clinfm`` command line, the CLI's composition root: the Typer app, and one module per verb group
registering its commands on it. Every command is a thin call into the packages; only ``cli`` and ``serve``
know about the terminal and HTTP.

==============  ============================================================
module          commands
==============  ============================================================
``ingest``      ``ingest omop|fhir|mimic|meds``
``synth``       ``synth`` (a seeded Synthea cohort, ingested)
``data``        ``validate``, ``stats``, ``timeline``
``deid``        ``deid-secret``, ``deid``, ``deid-text``
``model``       ``pretrain``, ``forecast``
``evaluate``    ``evaluate``
``reasoning``   ``ddx``, ``treatment-check``
``govern``      ``registry ...``, ``card``, ``audit verify``, ``access ...``
``batch``       ``embed``, ``score``
``monitor``     ``monitor replay|report``, ``retrain``
``serve``       ``serve``
``assist``      ``ask``
``demo``        ``demo``
``assist_eval`` ``assist-eval``, ``assist-finetune``, ``fhir-domains``
==============  ============================================================

``common`` holds the consoles, progress bar, error exits and the shared option groups; ``render`` the
terminal renderers. A new verb group is a new module with a ``register(app)`` function, listed below.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from clinfm import __version__
from clinfm.cli import (
    assist, assist_eval, batch, data, deid, demo, evaluate, govern, ingest, model, monitor, reasoning, serve, synth,
)
from clinfm.cli.common import console

app = typer.Typer(
    help="ClinFM: ingest clinical records into MEDS, then build, validate and serve clinical foundation models.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"clinfm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details (ids and counts only).")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


for _group in (ingest, synth, data, deid, model, evaluate, reasoning, govern, batch, monitor, serve, demo, assist,
               assist_eval):
    _group.register(app)

__all__ = ["app"]

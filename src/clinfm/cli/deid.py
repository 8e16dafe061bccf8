"""``clinfm deid-secret|deid|deid-text``: de-identify a MEDS dataset or free text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clinfm.cli import render
from clinfm.cli.common import EngineOptions, OutOpt, console, errors_exit, fail, options, progress_bar


def deid_secret(path: Annotated[Path, typer.Argument(help="Where to write the new secret (mode 0600).")]) -> None:
    """Create a random de-identification secret. Keep it: the same secret gives the same pseudonyms."""
    from clinfm.deid.structured import create_secret

    try:
        create_secret(path)
    except FileExistsError:
        fail(f"{path} already exists; refusing to overwrite a secret")
    console.print(f"Wrote a new secret to [cyan]{path}[/cyan] (mode 0600). Anyone holding it can link "
                  "pseudonyms back to source ids: store it like a password.")  # fmt: skip


@options
def deid(
    path: Annotated[Path, typer.Argument(help="MEDS dataset to de-identify.")],
    out: OutOpt,
    run: EngineOptions,
    secret_file: Annotated[Path | None, typer.Option("--secret-file", help="Secret key file (required).")] = None,
    policy: Annotated[str, typer.Option(help="shift (model building: dates shifted per subject) or safe-harbor.")] = "shift",
) -> None:
    """De-identify a MEDS dataset: keyed pseudonyms, per-subject date shifts (or Safe Harbor), scrubbed notes."""
    from clinfm.deid.structured import POLICIES, SecretError, deidentify_dataset, read_secret
    from clinfm.engine import EngineError

    if policy not in POLICIES:
        fail(f"--policy {policy!r} is not one of {', '.join(POLICIES)}")
    with errors_exit(SecretError):
        secret = read_secret(secret_file)
    engine = run.build()
    with progress_bar("de-identify", "shards") as update, errors_exit(ValueError, FileNotFoundError, EngineError):
        result = deidentify_dataset(path, out, secret, policy=policy, progress=update, engine=engine)  # type: ignore[arg-type]
    render.deid_summary(result)


def deid_text(
    in_path: Annotated[Path, typer.Option("--in", help="JSONL input, one {\"id\", \"text\"} object a line.")],
    out_path: Annotated[Path, typer.Option("--out", help="JSONL output with spans (and text unless detect).")],
    mode: Annotated[str, typer.Option(help="detect, redact, tag or surrogate.")] = "redact",
    quarantine: Annotated[Path | None, typer.Option(help="Where bad lines go (default OUT.quarantine.jsonl).")] = None,
) -> None:
    """De-identify free text line by line, for any pipeline. Bad lines are quarantined, never fatal."""
    from clinfm.deid.textio import MODES, deid_jsonl

    if mode not in MODES:
        fail(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    if not in_path.is_file():
        fail(f"--in {str(in_path)!r} does not exist")
    quarantine = quarantine or out_path.with_suffix(".quarantine.jsonl")
    with progress_bar("deid-text", "lines", total=None) as update:
        counts = deid_jsonl(in_path, out_path, mode=mode, quarantine_path=quarantine, progress=lambda n: update(n, None))
    console.print(" ".join(f"{k}: {v:,}" for k, v in counts.items() if isinstance(v, int)))
    console.print(f"Output: [cyan]{out_path}[/cyan]" + (f"; quarantine: [cyan]{quarantine}[/cyan]" if counts.get("quarantined") else ""))


def register(app: typer.Typer) -> None:
    app.command("deid-secret")(deid_secret)
    app.command()(deid)
    app.command("deid-text")(deid_text)

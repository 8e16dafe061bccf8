"""Key and lifecycle commands refuse what would weaken governance: keys that never expire by accident, absurd
rates, promotions by an actor nobody registered; and a key can be revoked from the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clinfm.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("isolated_home")


def _setup() -> None:
    for args in (["access", "create-org", "acme"], ["access", "create-user", "acme", "svc", "--role", "api_client"]):
        assert runner.invoke(app, args).exit_code == 0


@pytest.mark.parametrize("extra", [["--days", "0"], ["--days", "-3"], ["--rate", "100000000"], ["--rate", "0"]])
def test_create_key_refuses_never_expiring_or_absurd_terms(extra):
    _setup()
    result = runner.invoke(app, ["access", "create-key", "acme", "svc", "--scope", "system/Model.r", *extra])
    assert result.exit_code == 2 and "API key" not in result.output


def test_library_refuses_an_absurd_rate(db):
    from clinfm.govern import access

    access.create_organization("acme", actor="t", db=db)
    access.create_service_account("acme", "svc", actor="t", db=db)
    with pytest.raises(ValueError, match="rate_per_minute"):
        access.create_api_key("acme", "svc", ["system/Model.r"], actor="t", rate_per_minute=10**8, db=db)


def test_revoke_key_from_the_cli():
    from clinfm.govern import access

    _setup()
    out = runner.invoke(app, ["access", "create-key", "acme", "svc", "--scope", "system/Model.r", "--days", "30"]).output
    key = out.split("store it now): ")[1].split()[0]
    key_id = key.split("_")[1]
    result = runner.invoke(app, ["access", "revoke-key", key_id, "--reason", "leaked in a ticket"])
    assert result.exit_code == 0, result.output
    with pytest.raises(access.AuthenticationError, match="revoked"):
        access.authenticate(key)
    assert runner.invoke(app, ["access", "revoke-key", "nope", "--reason", "x"]).exit_code == 2


def test_promote_refuses_an_unregistered_actor(tmp_path, dataset_dir_tiny):
    from clinfm.govern import register_model

    _setup()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    v = register_model("m", run, dataset_dir_tiny, "svc", org="acme")
    result = runner.invoke(app, ["registry", "promote", v.id, "--to", "retired", "--reason", "withdrawn: superseded by v2",
                                 "--actor", "mallory"])  # fmt: skip
    assert result.exit_code == 1 and "not a registered user" in result.output


@pytest.fixture
def dataset_dir_tiny(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from clinfm import schema

    root = tmp_path / "meds"
    (root / "data").mkdir(parents=True)
    (root / "metadata").mkdir()
    cols = {c: [] for c in schema.EVENT_COLUMNS}
    for col, value in zip(schema.EVENT_COLUMNS, (1, dt.datetime(1960, 1, 1), "MEDS_BIRTH", None, None, None)):
        cols[col].append(value)
    pq.write_table(pa.table(cols, schema=schema.EVENT_SCHEMA), root / "data" / "0.parquet")
    (root / "metadata" / "dataset.json").write_text('{"dataset_name": "tiny"}')
    return root

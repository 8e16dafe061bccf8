"""The governance schema: tenants, users, keys, consent, model versions, reports, transitions, audit chain.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _org(primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "org_id", sa.String(64), sa.ForeignKey("organizations.id"), nullable=False, primary_key=primary_key
    )


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        _org(),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("org_id", "username"),
    )
    op.create_index("ix_users_org_id", "users", ["org_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        _org(),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("secret_hash", sa.String(256), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        _when("created_at"),
        _when("expires_at", nullable=True),
        _when("revoked_at", nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "rate_buckets",
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "consent_opt_outs",
        sa.Column("subject_id", sa.BigInteger(), primary_key=True),
        _org(primary_key=True),
        _when("recorded_at"),
        sa.Column("recorded_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_consent_opt_outs_org_id", "consent_opt_outs", ["org_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(40), primary_key=True),
        _org(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _when("created_at"),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("run_dir", sa.Text(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=True),
        sa.Column("tokenizer_sha256", sa.String(64), nullable=True),
        sa.Column("config_sha256", sa.String(64), nullable=True),
        sa.Column("training_config", sa.JSON(), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.UniqueConstraint("org_id", "name", "version"),
    )
    op.create_index("ix_model_versions_org_id", "model_versions", ["org_id"])
    for table in ("reports", "transitions"):
        columns = (
            [
                sa.Column("kind", sa.String(32), nullable=False),
                sa.Column("document", sa.JSON(), nullable=False),
                sa.Column("sha256", sa.String(64), nullable=False),
                sa.Column("attached_by", sa.String(100), nullable=False),
                _when("attached_at"),
            ]
            if table == "reports"
            else [
                sa.Column("from_state", sa.String(16), nullable=False),
                sa.Column("to_state", sa.String(16), nullable=False),
                sa.Column("actor", sa.String(100), nullable=False),
                sa.Column("approver_role", sa.String(32), nullable=True),
                sa.Column("reason", sa.Text(), nullable=False),
                _when("created_at"),
            ]
        )
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            _org(),
            sa.Column("model_version_id", sa.String(40), sa.ForeignKey("model_versions.id"), nullable=False),
            *columns,
        )
        op.create_index(f"ix_{table}_org_id", table, ["org_id"])
        op.create_index(f"ix_{table}_model_version_id", table, ["model_version_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("seq", sa.Integer(), nullable=False, unique=True),
        sa.Column("timestamp", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("model_version_id", sa.String(40), nullable=True),
        sa.Column("subject_id", sa.String(64), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_org_id", "audit_log", ["org_id"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_log",
        "transitions",
        "reports",
        "model_versions",
        "consent_opt_outs",
        "rate_buckets",
        "api_keys",
        "users",
        "organizations",
    ):
        op.drop_table(table)

"""The audit chain becomes keyed: each entry records the scheme its hash was made with.

Entries written before this revision keep ``sha256`` (the unkeyed recipe); new ones are ``hmac-sha256`` with the
key kept outside the database (:mod:`clinfm.govern.audit_keys`). ``audit verify`` accepts unkeyed entries only as
a prefix of the chain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("scheme", sa.String(16), nullable=False, server_default="sha256"))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("scheme")

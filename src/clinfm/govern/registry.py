"""The model registry: what each model version is made of, what it learned from, and the reports attached to it.

A version records the SHA-256 of every file in its run directory (weights, tokenizer and config by role), the
training dataset's fingerprint and de-identification, the training config, the code version, and its reports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clinfm import __version__, schema
from clinfm.govern import audit
from clinfm.govern.access import ensure_organization
from clinfm.govern.audit import canonical_json
from clinfm.govern.db import (
    DB,
    LOCAL_ORG,
    ModelVersionRecord,
    NotFound,
    Report,
    Transition,
    session_scope,
    utcnow,
)

DRAFT = "draft"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.ckpt")
ROLE_FILES = {"tokenizer": ("tokenizer.json",), "config": ("config.json",)}
TRAINING_CONFIG_FILES = ("training_config.json", "train_config.json", "train.json", "config.json")
DEMOGRAPHIC_PREFIXES = ("GENDER//", "RACE//", "ETHNICITY//")
DEMOGRAPHIC_GROUPS = {"GENDER": "sex", "RACE": "race", "ETHNICITY": "ethnicity"}
"""MEDS ``GENDER//`` codes carry administrative sex (OMOP gender_concept_id), not gender identity."""
INPUT_MARKERS = {
    "race": "RACE//", "ethnicity": "ETHNICITY//", "sex": "GENDER//", "date_of_birth": "MEDS_BIRTH",
    "language": "LANGUAGE//", "sexual_orientation": "SEXUAL_ORIENTATION//", "gender_identity": "GENDER_IDENTITY//",
    "social_determinants_of_health": "SDOH//",
}  # fmt: skip
"""Code prefixes that show a variable of 45 CFR 170.315(b)(11)(iv)(A)(5)-(13) in a tokenizer vocabulary."""
SMALL_CELL = 11
"""Subject counts below this are shown as ``"<11"`` (the CMS cell-size suppression rule)."""
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


# --- views -------------------------------------------------------------------------------------------------
class ReportInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    model_version_id: str
    kind: str
    document: dict[str, Any]
    sha256: str
    attached_by: str
    attached_at: dt.datetime


class TransitionInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    from_state: str
    to_state: str
    actor: str
    approver_role: str | None
    reason: str
    created_at: dt.datetime


class ModelVersion(BaseModel):
    """A registered model version, with its reports and lifecycle history (oldest first)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    org_id: str
    name: str
    version: int
    state: str
    created_at: dt.datetime
    created_by: str
    run_dir: str
    artifacts: dict[str, Any]
    weights_sha256: str | None
    tokenizer_sha256: str | None
    config_sha256: str | None
    training_config: dict[str, Any]
    code_version: str
    git_commit: str | None
    dataset: dict[str, Any]
    facts: dict[str, Any]
    reports: list[ReportInfo] = []
    transitions: list[TransitionInfo] = []

    def latest_report(self, kind: str) -> ReportInfo | None:
        matching = [r for r in self.reports if r.kind == kind]
        return matching[-1] if matching else None

    def entered(self, state: str) -> dt.datetime | None:
        """When the version last entered ``state``."""
        times = [t.created_at for t in self.transitions if t.to_state == state]
        return times[-1] if times else None


# --- fingerprints ------------------------------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hash_files(folder: Path, pattern: str = "**/*") -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` for every regular file under ``folder`` matching ``pattern``."""
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    return {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files
    }


def manifest_hash(files: dict[str, dict[str, Any]]) -> str:
    """One hash over a file manifest: SHA-256 of ``path<TAB>sha256<LF>`` lines in path order."""
    return hashlib.sha256(
        "".join(f"{p}\t{f['sha256']}\n" for p, f in sorted(files.items())).encode()
    ).hexdigest()


def artifact_roles(artifacts: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Which file is the weights, the tokenizer and the config (top-level names first, then anywhere)."""
    by_name: dict[str, list[str]] = {}
    for path in artifacts:
        by_name.setdefault(Path(path).name, []).append(path)
    roles: dict[str, str] = {}
    for role, names in {"weights": WEIGHT_FILES, **ROLE_FILES}.items():
        found = [p for n in names for p in sorted(by_name.get(n, []), key=lambda p: (p.count("/"), p))]
        if not found and role == "weights":
            found = sorted(
                (p for p in artifacts if p.endswith(".safetensors")), key=lambda p: (p.count("/"), p)
            )
        if found:
            roles[role] = found[0]
    return roles


def input_variables(tokenizer: Path | None) -> dict[str, bool | None]:
    """Which HTI-1 demographic variables the model can see: their code prefixes in the tokenizer vocabulary.

    None where it cannot be told (no tokenizer file, or health status assessments, which have no prefix). A
    prefix found is proof of use; one not found is not proof of absence if codes are named differently.
    """
    text = tokenizer.read_text(errors="replace") if tokenizer is not None and tokenizer.is_file() else None
    found: dict[str, bool | None] = {
        v: (None if text is None else m in text) for v, m in INPUT_MARKERS.items()
    }
    found["health_status_assessments"] = None
    return found


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _deid_summary(dataset_dir: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset's de-identification: the policy from ``dataset.json`` and the report's counts and risks.

    The report's smallest quasi-identifier classes are left out: they are the rows an attacker would want.
    """
    deid = (meta.get("clinfm") or {}).get("deid")
    report = _read_json(dataset_dir / ((deid or {}).get("report") or "deid_report.json"))
    if deid is None and report is None:
        return None
    summary: dict[str, Any] = {"policy": (deid or {}).get("policy") or (report or {}).get("policy")}
    if deid:
        summary.update({k: v for k, v in deid.items() if k in ("secret_fingerprint", "intervals_preserved")})
    if report:
        k_anon = {k: v for k, v in (report.get("k_anonymity") or {}).items() if k != "smallest_classes"}
        summary.update(
            report_sha256=hashlib.sha256(canonical_json(report).encode()).hexdigest(),
            changed=report.get("changed"),
            k_anonymity=k_anon,
            residual_risks=report.get("residual_risks", []),
        )
    return summary


def _suppress(n: int) -> int | str:
    return n if n >= SMALL_CELL else f"<{SMALL_CELL}"


def demographics(data_files: list[Path]) -> dict[str, Any]:
    """Subjects per sex, race and ethnicity code, and with a recorded birth, over the whole dataset (small cells
    suppressed)."""
    import polars as pl

    if not data_files:
        return {}
    frame = pl.scan_parquet(data_files).select(schema.SUBJECT_ID, schema.CODE)
    static = (
        frame.filter(
            pl.any_horizontal(*(pl.col(schema.CODE).str.starts_with(p) for p in DEMOGRAPHIC_PREFIXES))
        )
        .unique()
        .group_by(schema.CODE)
        .len()
        .collect()
    )
    out: dict[str, Any] = {"subjects": frame.select(pl.col(schema.SUBJECT_ID).n_unique()).collect().item()}
    for code, n in sorted(static.iter_rows()):
        group, _, value = code.partition("//")
        out.setdefault(DEMOGRAPHIC_GROUPS[group], {})[value] = _suppress(n)
    births = (
        frame.filter(pl.col(schema.CODE) == schema.BIRTH)
        .select(pl.col(schema.SUBJECT_ID).n_unique())
        .collect()
    )
    out["birth_recorded"] = _suppress(births.item())
    return out


def fingerprint_dataset(dataset_dir: str | Path) -> dict[str, Any]:
    """Path, row counts, content hash of ``data/*.parquet``, demographics and de-identification of a MEDS dataset."""
    import pyarrow.parquet as pq

    folder = Path(dataset_dir).resolve()
    data_dir = folder / schema.DATA_DIR
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"dataset {str(folder)!r} has no {schema.DATA_DIR}/ folder of MEDS parquet shards"
        )
    files = hash_files(data_dir, "**/*.parquet")
    meta = _read_json(folder / schema.DATASET_FILE) or {}
    clin = meta.get("clinfm") or {}
    paths = [data_dir / p for p in files]
    return {
        "path": str(folder),
        "dataset_name": meta.get("dataset_name"),
        "source": clin.get("source"),
        "etl_time": clin.get("etl_time"),
        "content_sha256": manifest_hash(files),
        "shards": len(files),
        "events": sum(pq.ParquetFile(p).metadata.num_rows for p in paths),
        "row_counts": clin.get("row_counts") or {},
        "demographics": demographics(paths),
        "deid": _deid_summary(folder, meta),
    }


def _training_config(run_dir: Path, given: dict[str, Any] | None) -> dict[str, Any]:
    if given is not None:
        return {"source": "argument", "values": given}
    for name in TRAINING_CONFIG_FILES:
        values = _read_json(run_dir / name)
        if values is not None:
            return {"source": name, "values": values}
    return {"source": None, "values": {}}


def _git_commit() -> str | None:
    """HEAD of the repository the clinfm code runs from (``+dirty`` with uncommitted changes), if it is one."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "diff", "--quiet", "HEAD"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty.returncode == 1 else "") if head else None


# --- reading -----------------------------------------------------------------------------------------------
def find_version(session: Session, version_id: str) -> ModelVersionRecord:
    """The row of ``version_id`` as the session sees it (tenant-filtered), or :class:`NotFound`."""
    row = session.execute(
        select(ModelVersionRecord).where(ModelVersionRecord.id == version_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no model version {version_id!r}")
    return row


def version_view(session: Session, row: ModelVersionRecord) -> ModelVersion:
    """The public view of ``row`` with its reports and transitions."""
    reports = session.execute(
        select(Report).where(Report.model_version_id == row.id).order_by(Report.id)
    ).scalars()
    steps = session.execute(
        select(Transition).where(Transition.model_version_id == row.id).order_by(Transition.id)
    )
    view = ModelVersion.model_validate(row)
    view.reports = [ReportInfo.model_validate(r) for r in reports]
    view.transitions = [TransitionInfo.model_validate(t) for t in steps.scalars()]
    return view


def get_model(version_id: str, *, org: str | None = None, db: DB = None) -> ModelVersion:
    """The model version ``version_id``; with ``org``, :class:`NotFound` unless it belongs to that organization."""
    with session_scope(db, org=org) as session:
        return version_view(session, find_version(session, version_id))


def list_models(
    *, org: str | None = None, name: str | None = None, state: str | None = None, db: DB = None
) -> list[ModelVersion]:
    """Model versions, oldest first; ``org`` limits to one tenant, ``name`` and ``state`` filter further."""
    query = select(ModelVersionRecord).order_by(ModelVersionRecord.created_at, ModelVersionRecord.version)
    if name is not None:
        query = query.where(ModelVersionRecord.name == name)
    if state is not None:
        query = query.where(ModelVersionRecord.state == state)
    with session_scope(db, org=org) as session:
        return [version_view(session, row) for row in session.execute(query).scalars().all()]


# --- writing -----------------------------------------------------------------------------------------------
def register_model(
    name: str,
    run_dir: str | Path,
    dataset_dir: str | Path,
    actor: str,
    *,
    org: str = LOCAL_ORG,
    training_config: dict[str, Any] | None = None,
    db: DB = None,
) -> ModelVersion:
    """Register the model trained in ``run_dir`` on ``dataset_dir`` as the next version of ``name``, in ``draft``.

    ``training_config`` defaults to the first of :data:`TRAINING_CONFIG_FILES` found in the run directory; the
    code version is the one it records (``clinfm_version``, ``git_commit``) or else the running code's.
    """
    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {str(run)!r} does not exist")
    artifacts = hash_files(run)
    if not artifacts:
        raise FileNotFoundError(f"run directory {str(run)!r} holds no files to register")
    roles = artifact_roles(artifacts)
    dataset = fingerprint_dataset(dataset_dir)
    config = _training_config(run, training_config)
    values = config["values"]
    code_version = str(values.get("clinfm_version") or __version__)
    git_commit = values.get("git_commit") or _git_commit()

    def role_hash(role: str) -> str | None:
        return artifacts[roles[role]]["sha256"] if role in roles else None

    with session_scope(db, org=org, write=True) as session:
        ensure_organization(session, org, actor)
        latest = session.execute(
            select(func.max(ModelVersionRecord.version)).where(ModelVersionRecord.name == name)
        )
        row = ModelVersionRecord(
            id=f"mv_{secrets.token_hex(6)}",
            org_id=org,
            name=name,
            version=(latest.scalar() or 0) + 1,
            state=DRAFT,
            created_at=utcnow(),
            created_by=actor,
            run_dir=str(run),
            artifacts={
                "files": artifacts,
                "roles": roles,
                "manifest_sha256": manifest_hash(artifacts),
                "input_variables": input_variables(
                    run / roles["tokenizer"] if "tokenizer" in roles else None
                ),
            },
            weights_sha256=role_hash("weights"),
            tokenizer_sha256=role_hash("tokenizer"),
            config_sha256=role_hash("config"),
            training_config=config,
            code_version=code_version,
            git_commit=git_commit,
            dataset=dataset,
            facts={},
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            "model.register",
            actor=actor,
            model_version_id=row.id,
            details={
                "model_name": name,
                "version": row.version,
                "weights_sha256": row.weights_sha256,
                "manifest_sha256": row.artifacts["manifest_sha256"],
                "dataset_sha256": dataset["content_sha256"],
            },
        )
        return version_view(session, row)


def _load_document(report_json: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    if isinstance(report_json, dict):
        return report_json
    text = str(report_json)
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"report file {text!r} does not exist")
        text = path.read_text()
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"a report must be a JSON object, not {type(value).__name__}")
    return value


def attach_report(
    version_id: str,
    report_json: dict[str, Any] | str | os.PathLike,
    kind: str = "validation",
    *,
    actor: str,
    primary_model: str | None = None,
    org: str | None = None,
    db: DB = None,
) -> ReportInfo:
    """Attach a JSON document (a dict, JSON text, or a path to a ``.json`` file) to a model version.

    ``kind`` names what it is: ``validation`` (gates ``validated``, see :mod:`clinfm.govern.reports`),
    ``monitoring`` (gates ``pilot``), ``external_validation``, ``local_validation``, ... ``primary_model`` names
    the entry of the report's ``models`` that is this version (stored in the document as ``primary_model``) when
    the report compares several candidates, as ``clinfm.validate`` does (``fm_probe``, ``fm_zeroshot``, ...).
    """
    if not _KIND.match(kind):
        raise ValueError(f"report kind {kind!r} must be a lowercase identifier like 'validation'")
    document = _load_document(report_json)
    if primary_model is not None:
        models: dict[str, Any] = document["models"] if isinstance(document.get("models"), dict) else {}
        if primary_model not in models:
            raise ValueError(
                f"primary_model {primary_model!r} is not among the report's models {sorted(models)}"
            )
        document = {**document, "primary_model": primary_model}
    digest = hashlib.sha256(canonical_json(document).encode()).hexdigest()
    with session_scope(db, org=org, write=True) as session:
        row = find_version(session, version_id)
        report = Report(
            org_id=row.org_id,
            model_version_id=row.id,
            kind=kind,
            document=document,
            sha256=digest,
            attached_by=actor,
            attached_at=utcnow(),
        )
        session.add(report)
        session.flush()
        audit.append(
            session,
            "report.attach",
            actor=actor,
            org=row.org_id,
            model_version_id=row.id,
            details={"report_id": report.id, "kind": kind, "sha256": digest},
        )
        return ReportInfo.model_validate(report)


def update_facts(
    version_id: str, facts: dict[str, str], *, actor: str, org: str | None = None, db: DB = None
) -> ModelVersion:
    """Merge statements people supply about a version (intended use, developer, ...) into its record.

    Callers validate the keys (:func:`clinfm.govern.card.set_card_facts`); an empty value removes a fact.
    """
    with session_scope(db, org=org, write=True) as session:
        row = find_version(session, version_id)
        merged = {**row.facts, **{k: v for k, v in facts.items() if v}}
        row.facts = {k: v for k, v in merged.items() if facts.get(k, v)}
        audit.append(
            session,
            "model.facts",
            actor=actor,
            org=row.org_id,
            model_version_id=row.id,
            details={
                "keys": sorted(facts),
                "sha256": hashlib.sha256(canonical_json(row.facts).encode()).hexdigest(),
            },
        )
        return version_view(session, row)

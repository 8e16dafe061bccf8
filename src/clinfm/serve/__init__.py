"""Serving: the REST API, FHIR operation, CDS Hooks services and clinician web pages (``create_app``, ``run``)."""

from clinfm.serve.app import create_app, run
from clinfm.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "run"]

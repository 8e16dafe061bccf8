"""FHIR R4 views over the MEDS store: events as resources (``resources``), searches with FHIR parameters
(``search``), and written resources kept as proposals for clinician review, never in the record (``proposals``).
"""

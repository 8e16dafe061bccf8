"""A MedAgentBench-style task suite over ClinFM's own FHIR view of the store: task templates with ground truth
computed from the store (``tasks``), graders by code (``grade``), agents that solve tasks through FHIR calls
(``agents``: a no-language-model baseline, the embedded model, any OpenAI-compatible endpoint), and the report
with bootstrap intervals (``report``).
"""

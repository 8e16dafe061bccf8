"""One router per surface: health, models, predict, ddx, treatment, FHIR, CDS Hooks, web pages."""

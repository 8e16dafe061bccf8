"""One module per source: omop, fhir, mimic, meds; each plans tasks and converts one task."""

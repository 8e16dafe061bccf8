"""De-identification: structured (pseudonyms, date shifts, Safe Harbor) and clinical notes."""

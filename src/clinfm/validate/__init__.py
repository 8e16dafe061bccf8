"""Local validation: metrics with bootstrap CIs, model comparison, subgroups, and the HTML/JSON report.

The entry point is :func:`clinfm.validate.evaluate.evaluate` (kept in its module, not re-exported here, so
that the name ``clinfm.validate.evaluate`` stays the module).
"""

"""The deployment loop: a prediction store, prospective replay of history as if live, drift and performance
monitoring with alerts merged into incidents, the assistant's audited calls, clinician feedback, and controlled
change (retrain or recalibrate under a plan).

Top-level functions are what ``clinfm monitor replay|report`` and ``clinfm retrain --plan`` call.
"""

from clinfm.monitor.assistant import AssistantCall
from clinfm.monitor.feedback import FeedbackSummary, feedback_summary
from clinfm.monitor.incidents import Incident
from clinfm.monitor.plan import ChangePlan, load_plan
from clinfm.monitor.policy import MonitoringPolicy, PolicyError, load_policy
from clinfm.monitor.replay import ReplaySummary, replay
from clinfm.monitor.report import Alert, MonitoringSummary, attach_summary, monitor_report
from clinfm.monitor.retrain import ChangeDecision, retrain
from clinfm.monitor.scorer import CountScorer, load_registered_scorer, register_scorer, train_scorer
from clinfm.monitor.store import PredictionRecord, PredictionStore, import_serve_predictions

__all__ = [
    "Alert", "AssistantCall", "ChangeDecision", "ChangePlan", "CountScorer", "FeedbackSummary", "Incident",
    "MonitoringPolicy", "MonitoringSummary", "PolicyError", "PredictionRecord", "PredictionStore",
    "ReplaySummary", "attach_summary", "feedback_summary", "import_serve_predictions", "load_plan",
    "load_policy", "load_registered_scorer", "monitor_report", "register_scorer", "replay", "retrain",
    "train_scorer",
]  # fmt: skip

"""Prediction tasks: YAML task configs, one labeler per task kind, subject-level splits, count features.

Every task states its prediction time, observation window, outcome window and exclusions (packaged
``clinfm/defaults/tasks/*.yaml`` or ``$CLINFM_TASKS_DIR``); features only see events at or before the prediction time.
"""

from clinfm.tasks.config import CodeNotFoundError, TaskConfig, TaskConfigError, available_tasks, load_task
from clinfm.tasks.labelers import LabelingResult, label_dataset

__all__ = [
    "CodeNotFoundError",
    "LabelingResult",
    "TaskConfig",
    "TaskConfigError",
    "available_tasks",
    "label_dataset",
    "load_task",
]

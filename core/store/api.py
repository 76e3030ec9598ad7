"""What the pages use of the project store (`core.store.project`) and of a run folder's contract
(`core.store.run_folder`), and what is wrong with the class sizes (`core.store.balance`). Pages import the store from here only."""

from core.config import workspace_root
from core.store.balance import MAX_IMBALANCE, BalanceProblem, balance_problems
from core.store.project import (ClassInfo, ImageRecord, Project, ProjectDamaged, RunRecord, StoreError,
                                create_project, list_projects, open_project, restore_backup, validate_name, visible)
from core.store.run_folder import RunFolderInvalid, read_evaluation

__all__ = ["MAX_IMBALANCE", "BalanceProblem", "ClassInfo", "ImageRecord", "Project", "ProjectDamaged",
           "RunFolderInvalid", "RunRecord", "StoreError", "balance_problems", "create_project", "list_projects", "open_project", "read_evaluation", "restore_backup", "validate_name",
           "visible", "workspace_root"]

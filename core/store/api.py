"""What the pages use of the project store (`core.store.project`) and of a run folder's contract
(`core.store.run_folder`). Pages import the store from here only."""

from core.config import workspace_root
from core.store.project import (ClassInfo, ImageRecord, Project, ProjectDamaged, RunRecord, StoreError,
                                create_project, list_projects, open_project, restore_backup, validate_name, visible)
from core.store.run_folder import RunFolderInvalid, read_evaluation

__all__ = ["ClassInfo", "ImageRecord", "Project", "ProjectDamaged", "RunFolderInvalid", "RunRecord", "StoreError",
           "create_project", "list_projects", "open_project", "read_evaluation", "restore_backup", "validate_name",
           "visible", "workspace_root"]

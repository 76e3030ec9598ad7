"""The project store: `project.Project` (SQLite beside an ImageFolder tree) put together from the pieces
here, each readable alone, and `run_folder`, the contract of what a run folder holds.

Pages call this concern through `core.store.project.api`.
"""

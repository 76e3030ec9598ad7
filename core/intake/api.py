"""What the pages use to bring photos in: a web collection's request and report (`core.intake.collect`; the
collection itself runs as a job, `core.jobs.api`), and photos the user already has (`core.intake.ingest`).
Pages import intake from here only."""

from core.intake.collect import CollectReport, CollectRequest
from core.intake.ingest import ImportReport, Progress, import_files, import_zip

__all__ = ["CollectReport", "CollectRequest", "ImportReport", "Progress", "import_files", "import_zip"]

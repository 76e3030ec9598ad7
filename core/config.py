"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path

BING_ENDPOINT = "https://www.bing.com/images/async"


def workspace_root() -> Path:
    """Folder that holds every project and the shared caches (TRANSFERLAB_HOME, default ./workspace)."""
    return Path(os.environ.get("TRANSFERLAB_HOME", "workspace")).expanduser().resolve()


def cache_dir() -> Path:
    """Caches shared by all projects: converted backbones, embeddings (TRANSFERLAB_CACHE overrides)."""
    override = os.environ.get("TRANSFERLAB_CACHE")
    return Path(override).expanduser().resolve() if override else workspace_root() / ".cache"


def search_endpoint() -> str:
    """Image-search endpoint; tests point it at a local stand-in for Bing."""
    return os.environ.get("TRANSFERLAB_SEARCH_URL", BING_ENDPOINT)


def allow_private_hosts() -> bool:
    """Whether the downloader may fetch from loopback/private addresses (off in production)."""
    return os.environ.get("TRANSFERLAB_ALLOW_PRIVATE_HOSTS", "") in {"1", "true", "yes"}

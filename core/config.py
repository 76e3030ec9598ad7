"""Settings read from the environment, in one place."""

from __future__ import annotations

import json
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


def ice_servers() -> list[dict]:
    """STUN/TURN servers for the live webcam (TRANSFERLAB_ICE_SERVERS, a JSON list such as
    '[{"urls": "stun:stun.example.org:3478"}]'). None by default: localhost and a LAN need none,
    and the app contacts no outside server unless told to."""
    raw = os.environ.get("TRANSFERLAB_ICE_SERVERS", "").strip()
    if not raw:
        return []
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TRANSFERLAB_ICE_SERVERS is not valid JSON ({exc}).") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise ValueError('TRANSFERLAB_ICE_SERVERS must be a JSON list like [{"urls": "stun:host:3478"}].')
    return servers

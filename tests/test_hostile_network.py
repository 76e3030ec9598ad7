"""Hostile servers: dripping headers and bodies, silent hosts, endless or slow search pages, DNS that
hangs, addresses that smuggle a private IPv4 inside IPv6 (issue 12). Every case is bounded in time by
the stand-in (60 s); a case counts as ended by the client when it ends in under half of what would have ended it
otherwise, which a loaded machine cannot blur."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from core.intake import search
from core.intake.collect import CollectRequest, collect
from core.intake.download import Downloader, address_allowed
from core.intake.search import SearchCancelled, SearchUnavailable, search_page
from tests.bing_standin import FAST, loopback_only  # noqa: F401 (fixture)
from tests.hostile_standin import (ENDLESS_QUERY, HOSTILE_ROUTES, PRIVATE_IPV6_FORMS, SLOW_QUERY,  # noqa: F401
                                   HostileStandin, hostile)
from tests.waiting import wait_for

QUICK = replace(FAST, timeout=1.0, deadline=2.0, allow_private=True)
HANG = 60.0  # seconds a hanging resolver waits, as long as the stand-in's hostile answers last


@pytest.mark.parametrize("form", PRIVATE_IPV6_FORMS)
def test_ipv6_forms_of_private_ipv4_are_refused(form):
    assert not address_allowed(form, allow_private=False)
    assert address_allowed(form, allow_private=True)


@pytest.mark.parametrize("public", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "2606:4700::1111", "8.8.8.8"])
def test_ipv6_forms_of_public_ipv4_stay_allowed(public):
    assert address_allowed(public, allow_private=False)


@pytest.mark.parametrize("form", ["::127.0.0.1", "64:ff9b::7f00:1", "fec0::1"])
def test_private_ipv6_forms_are_refused_before_connecting(form, hostile, loopback_only):
    with Downloader(replace(QUICK, allow_private=False), resolve=hostile.resolve) as pool:
        result = pool.fetch(f"http://[{form}]:{hostile.port}/photo/1.jpg")
    assert result.reason == "blocked_address"
    assert all(address == "127.0.0.1" for address, _ in loopback_only)


@pytest.mark.parametrize("route", ["headerdrip", "bodydrip", "silent"])
def test_the_deadline_covers_headers_and_body(route, hostile):
    with Downloader(QUICK, resolve=hostile.resolve) as pool:
        started = time.monotonic()
        result = pool.fetch(hostile.url(route, 1))
    assert result.reason == "timeout"
    assert time.monotonic() - started < hostile.limit / 2


def test_the_deadline_covers_dns():
    hanging = threading.Event()

    def slow_resolver(host: str, port: int) -> list[str]:
        hanging.wait(HANG)  # a resolver that does not answer
        return ["127.0.0.1"]

    try:
        with Downloader(QUICK, resolve=slow_resolver) as pool:
            started = time.monotonic()
            result = pool.fetch("http://slow-dns.standin.test/x.jpg")
        assert result.reason == "timeout"
        assert time.monotonic() - started < HANG / 2
    finally:
        hanging.set()


def _download_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("download")]


@pytest.mark.parametrize("route", ["headerdrip", "silent", "dns"])
def test_cancel_ends_every_download_thread(route, hostile):
    hanging = threading.Event()

    def resolver(host: str, port: int) -> list[str]:
        if route == "dns":
            hanging.wait(HANG)
        return hostile.resolve(host, port)

    cancel = threading.Event()
    settings = replace(QUICK, deadline=60.0, timeout=30.0, workers=4, per_host=4)
    try:
        with Downloader(settings, resolve=resolver) as pool:
            futures = [pool.submit(hostile.url("headerdrip" if route == "dns" else route, i, host=0), cancel)
                       for i in range(4)]
            wait_for(lambda: route == "dns" or len(hostile.image_hits()) >= 4, "four requests at the server")
            time.sleep(0.3)  # most likely blocked in their reads by now; a cancel earlier than that must work too
            cancel.set()
            cancelled_at = time.monotonic()
            reasons = [future.result(timeout=30).reason for future in futures]
            took = time.monotonic() - cancelled_at
        assert reasons == ["cancelled"] * 4
        assert took < settings.timeout / 2, f"cancel took {took:.1f} s"  # not the reads' own timeout
        wait_for(lambda: not _download_threads(), "every download thread to end")
    finally:
        hanging.set()


def test_endless_search_page_is_capped(hostile, monkeypatch):
    monkeypatch.setattr(search, "MAX_PAGE_BYTES", 2 * 1024 ** 2)
    with pytest.raises(SearchUnavailable, match="larger than"):
        search_page(ENDLESS_QUERY, 0, 50)


def test_slow_search_page_has_a_total_deadline(hostile, monkeypatch):
    monkeypatch.setattr(search, "DEADLINE", 2.0)
    started = time.monotonic()
    with pytest.raises(SearchUnavailable, match="in time"):
        search_page(SLOW_QUERY, 0, 50)
    assert time.monotonic() - started < hostile.limit / 2


def test_cancel_stops_a_slow_search(hostile):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(SearchCancelled):
        search_page(SLOW_QUERY, 0, 50, cancel=cancel)
    assert time.monotonic() - started < search.DEADLINE / 2  # the cancel ended it, not the page's deadline


def test_collect_survives_every_hostile_link(project, hostile, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_ALLOW_PRIVATE_HOSTS", "1")  # the stand-in's hosts are loopback
    good = hostile.query_photo_urls("ok", 4)
    hostile.results["mixed"] = hostile.hostile_urls() + good
    with Downloader(QUICK, resolve=hostile.resolve) as pool:
        started = time.monotonic()
        report = collect(project, CollectRequest(["mixed"], per_class=20), downloader=pool)  # more than there are
    took = time.monotonic() - started
    failed = report.classes[0].failed
    stored_urls = {record.source_url for record in project.images()}
    assert set(good) <= stored_urls
    assert len(stored_urls) + sum(failed.values()) == len(hostile.results["mixed"])
    assert failed.get("timeout") == 3  # header drip, body drip, silent host
    assert failed.get("not_image") == 2  # PostScript and HTML posing as JPEG
    assert took < hostile.limit / 2  # the hostile links' deadlines ended them, not the stand-in
    assert [p for p in project.images_dir.rglob("*") if p.is_file() and p.name.startswith(".")] == []

"""Web collection end to end against a local stand-in for Bing: search, download, store.

Everything runs on 127.0.0.1; `loopback_only` turns any other connection into a failure.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core.intake.collect import CollectEvent, CollectReport, CollectRequest, collect
from core.intake.download import Downloader, DownloadSettings, address_allowed
from core.images import decode_image
from core.intake.search import HEADERS, SearchUnavailable, search_page
from core.store.project import Project, StoreError
from tests.bing_standin import FAST, PRIVATE_URL, BingStandin, bing_standin, loopback_only, standin  # noqa: F401,F811 (fixtures)
from tests.browser import free_port
from tests.waiting import settled, wait_for

PATIENT = replace(FAST, timeout=60.0, deadline=120.0)  # for tests that hold requests at the stand-in


def downloader(standin: BingStandin, settings: DownloadSettings = FAST) -> Downloader:
    return Downloader(settings, resolve=standin.resolve)


def run(project: Project, standin: BingStandin, names: list[str], **options) -> tuple[CollectReport, list[CollectEvent]]:
    """collect() with short timeouts; returns the report and the events."""
    events: list[CollectEvent] = []
    request = CollectRequest(names, **{"per_class": 20, **options})
    with downloader(standin) as pool:
        report = collect(project, request, on_event=events.append, downloader=pool)
    return report, events


def stored(project: Project, class_name: str) -> dict[str, Path]:
    """source URL -> file of every photo in a class, checking each file is whole and the folder holds nothing else."""
    records = project.images(class_name)
    folder = project.images_dir / class_name
    assert sorted(p.name for p in folder.iterdir()) == sorted(r.path.name for r in records)
    for record in records:
        decode_image(record.path.read_bytes())
    return {r.source_url: r.path for r in records}


# ---- what lands and what is rejected --------------------------------------------------------


def test_each_kind_of_link_is_stored_or_rejected_with_its_reason(project, standin):
    good = [standin.photo_url(1, "jpg"), standin.photo_url(2, "png"), standin.photo_url(3, "webp"),
            standin.url("flaky", 4), standin.redirect_url(standin.photo_url(6))]
    bad = {
        standin.url("page", 1): "not_image",  # HTML served as .jpg
        standin.url("missing", 1): "http_404",
        standin.url("hang", 1): "timeout",
        standin.url("huge", 1): "too_big",  # no Content-Length: cut off while streaming
        standin.url("huge", 2, query="declared=1"): "too_big",  # refused from its Content-Length
        standin.url("loop", "a"): "redirect_loop",
        standin.url("tiny", 1, "png"): "too_small",
        standin.url("truncated", 5): "truncated",
        standin.redirect_url("http://224.0.0.1/x.jpg"): "blocked_address",  # checked on every hop
        f"ftp://h1.standin.test:{standin.port}/x.jpg": "not_http",
        "http://nowhere.invalid/x.jpg": "dns",
    }
    standin.results["mixed"] = good + list(bad)

    report, events = run(project, standin, ["mixed"])

    [result] = report.classes
    assert set(stored(project, "mixed")) == set(good)
    assert result.saved == 5 and result.exhausted and result.duplicates == 0
    assert result.failed == Counter(bad.values())
    assert {e.url: e.reason for e in events if e.kind == "image_failed"} == bad
    # 500 then 200: retried once; 404 and timeouts are not retried
    paths = [hit.path for hit in standin.image_hits()]
    assert paths.count("/flaky/4.jpg") == 2
    assert paths.count("/missing/1.jpg") == 1 and paths.count("/hang/1.jpg") == 1


def test_copies_are_recognised_and_a_second_run_only_adds(project, standin):
    originals = [standin.photo_url(seed) for seed in range(11, 21)]
    standin.results["cats"] = originals
    first, _ = run(project, standin, ["cats"], per_class=10)
    assert first.classes[0].saved == 10
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in stored(project, "cats").values()}

    standin.results["cats more"] = [
        standin.url("mirror", 11),  # the same file at another URL
        standin.url("resized", 12),  # the same picture, smaller
        originals[2],  # a URL already in the class: skipped without downloading
        *(standin.photo_url(seed) for seed in range(21, 26)),
    ]
    second, _ = run(project, standin, ["cats"], per_class=10, extra_words="more")

    [result] = second.classes
    assert result.query == "cats more"
    assert result.saved == 5 and result.exhausted
    assert result.failed == {"duplicate": 1, "near_duplicate": 1, "already_stored": 1}
    assert result.duplicates == 3
    after = stored(project, "cats")
    assert len(after) == 15
    assert all(path.read_bytes() == data and path.stat().st_mtime_ns == mtime for path, (data, mtime) in before.items())
    assert [hit.path for hit in standin.image_hits()].count(urlsplit(originals[2]).path) == 1


def test_each_class_gets_its_own_query_and_pages_advance_by_offset(project, standin):
    standin.per_query = 60  # pages are cut to 35 results, as Bing does
    report, events = run(project, standin, ["red fox", "barn owl"], per_class=40)

    assert [c.saved for c in report.classes] == [40, 40]
    assert not any(c.exhausted or c.failed for c in report.classes)
    assert not set(stored(project, "red fox")) & set(stored(project, "barn owl"))
    searches = [(hit.params["q"], hit.params["first"]) for hit in standin.search_hits()]
    assert searches == [("red fox", "0"), ("red fox", "35"), ("barn owl", "0"), ("barn owl", "35")]
    assert [e.kind for e in events if e.class_name == "red fox"][0] == "class_started"
    assert [e.kind for e in events if e.class_name == "barn owl"][-1] == "class_finished"
    assert [e.saved for e in events if e.kind == "image_saved"] == [*range(1, 41), *range(1, 41)]


def test_results_running_out_are_reported(project, standin):
    standin.per_query = 7
    report, _ = run(project, standin, ["rare bird"], per_class=20)
    assert report.classes[0].saved == 7 and report.classes[0].exhausted
    assert report.rows()[0] == {
        "class": "rare bird", "query": "rare bird", "saved": 7, "requested": 20, "duplicates": 0, "failed": 0,
        "reasons": "", "seconds": round(report.classes[0].seconds, 1), "results ran out": True,
    }


# ---- concurrency, politeness, cancelling ------------------------------------------------------


def test_downloads_run_concurrently_but_at_most_two_per_host(project, standin):
    standin.hosts = 2  # 8 workers, 2 hosts: the per-host limit is what binds
    standin.gate.clear()  # requests are held until the test has seen the slots fill
    reports: list[CollectReport] = []
    with Downloader(PATIENT, resolve=standin.resolve) as pool:
        collecting = threading.Thread(target=lambda: reports.append(
            collect(project, CollectRequest(["gulls"], per_class=24), downloader=pool)), daemon=True)
        collecting.start()
        try:
            wait_for(lambda: standin.active_total() >= 4, "four downloads at once")
            time.sleep(0.2)  # room for a fifth request to arrive, were a limit broken (only a failure waits on it)
            held = standin.active_total()
        finally:
            standin.gate.set()
        collecting.join(PATIENT.deadline)

    assert held == 4
    assert reports and reports[0].classes[0].saved == 24
    assert len(standin.max_active) == 2 and max(standin.max_active.values()) == 2
    assert standin.max_active_total == 4  # never more, before or after the gate opened


def test_a_busy_host_serves_waiting_downloads_in_the_order_they_were_submitted(standin):
    one_slot = replace(PATIENT, workers=6, per_host=1)
    photos = [standin.photo_url(seed) for seed in (40, 8, 32, 16, 24)]  # all on host 0, not in seed order
    host = urlsplit(photos[0]).hostname
    standin.gate.clear()
    with downloader(standin, one_slot) as pool:
        try:
            blocker = pool.submit(standin.photo_url(48))  # host 0 as well: it takes the host's only slot
            wait_for(lambda: standin.active_total() == 1, "the first download to reach the server")
            results = [pool.submit(url) for url in photos]
            # the host's queue of waiting downloads (the downloader's own state): all five wait in it
            wait_for(lambda: len(pool._hosts._waiting.get(host, ())) == 5, "five downloads waiting for the host")
        finally:
            standin.gate.set()
        assert all(f.result().ok for f in [blocker, *results])

    served = [f"http://{hit.host}{hit.path}" for hit in standin.image_hits()[1:]]
    assert served == photos


def test_events_come_from_the_calling_thread(project, standin):
    threads = set()
    with downloader(standin) as pool:
        collect(project, CollectRequest(["ducks"], per_class=5), on_event=lambda e: threads.add(threading.get_ident()),
                downloader=pool)
    assert threads == {threading.get_ident()}


def test_cancel_keeps_only_complete_photos_and_starts_no_new_downloads(project, standin):
    standin.latency = 0.2
    cancel = threading.Event()

    def cancel_after_three(event: CollectEvent) -> None:
        if event.kind == "image_saved" and event.saved == 3:
            cancel.set()

    with downloader(standin) as pool:
        report = collect(project, CollectRequest(["geese", "swans"], per_class=40), on_event=cancel_after_three,
                         cancel=cancel, downloader=pool)
        # requests sent before the cancel may still be on their way in; queued ones, had the cancel not dropped
        # them, would keep the count growing (0.2 s each, 8 at a time) well past the in-flight window
        requested = settled(lambda: len(standin.image_hits()), "the requests reaching the stand-in")

    assert report.cancelled and [c.saved for c in report.classes] == [3]
    assert len(stored(project, "geese")) == 3
    assert project.class_names() == ["geese"]
    assert requested <= 2 * FAST.workers + 3  # the in-flight window, topped up until the cancel, not 40
    assert not list(project.images_dir.rglob(".tmp-*"))


def test_downloads_waiting_for_a_host_never_start_once_cancelled(standin):
    cancel = threading.Event()
    urls = [standin.photo_url(seed) for seed in (48, 40, 8, 32, 16, 24)]  # all on host 0
    standin.gate.clear()
    with downloader(standin, replace(PATIENT, per_host=1)) as pool:
        try:
            futures = [pool.submit(url, cancel) for url in urls]
            wait_for(lambda: standin.active_total() == 1, "the first download to reach the server")
            wait_for(lambda: len(pool._hosts._waiting.get(urlsplit(urls[0]).hostname, ())) == 5,
                     "five downloads waiting for the host")
            cancel.set()
        finally:
            standin.gate.set()
        assert [f.result().reason for f in futures] == ["cancelled"] * 6
    assert [hit.path for hit in standin.image_hits()] == [urlsplit(urls[0]).path]


def test_cancel_stops_a_download_in_the_middle(standin):
    standin.huge_bytes = 400 * 64 * 1024  # 400 chunks 50 ms apart: a body that takes 20 s to send
    cancel = threading.Event()

    def cancel_once_it_is_sending() -> None:
        wait_for(lambda: standin.image_hits(), "the download to start")
        cancel.set()

    threading.Thread(target=cancel_once_it_is_sending, daemon=True).start()
    started = time.monotonic()
    with downloader(standin, replace(PATIENT, max_bytes=2 * standin.huge_bytes)) as pool:
        result = pool.fetch(standin.url("drip", 1), cancel)
    assert result.reason == "cancelled" and result.data is None
    assert time.monotonic() - started < 10  # half the body's time: the cancel ended it, not the body's end


def test_redirects_are_capped_at_five(standin):
    def chain(hops: int) -> str:
        url = standin.photo_url(7)
        for _ in range(hops):
            url = standin.redirect_url(url)
        return url

    with downloader(standin) as pool:
        assert pool.fetch(chain(5)).ok
        assert pool.fetch(chain(6)).reason == "too_many_redirects"


def test_https_goes_through_tls(standin):
    with downloader(standin) as pool:  # the stand-in speaks plain HTTP, so the handshake fails
        assert pool.fetch(f"https://h1.standin.test:{standin.port}/photo/1.jpg").reason == "tls"


# ---- search ------------------------------------------------------------------------------------


def test_search_parameters_and_headers_reach_the_server(standin):
    search_page("red fox", 70, 35, image_type="clipart", safe_search=False)
    search_page("red fox", 0, 35, image_type="line")
    off, strict = standin.search_hits()
    assert off.params == {"q": "red fox", "first": "70", "count": "35", "adlt": "off", "qft": "+filterui:photo-clipart"}
    assert strict.params["adlt"] == "strict" and strict.params["qft"] == "+filterui:photo-linedrawing"
    assert off.headers["User-Agent"] == HEADERS["User-Agent"]


def test_collect_passes_its_options_to_the_search(project, standin):
    run(project, standin, ["owl"], per_class=1, image_type="transparent", safe_search=False, extra_words="drawing")
    [hit] = standin.search_hits()
    assert hit.params["q"] == "owl drawing" and hit.params["adlt"] == "off"
    assert hit.params["qft"] == "+filterui:photo-transparent"


def test_result_urls_are_unescaped_like_the_library_does(project, standin):
    url = standin.photo_url(8) + "?tag=red fox&size=2"
    standin.results["foxes"] = [url]
    report, _ = run(project, standin, ["foxes"])
    assert report.classes[0].saved == 1
    assert set(stored(project, "foxes")) == {url.replace(" ", "%20")}
    assert standin.image_hits()[0].params == {"tag": "red fox", "size": "2"}


def test_unreachable_search_aborts_and_leaves_the_project_untouched(project, standin, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_SEARCH_URL", f"http://127.0.0.1:{free_port()}/images/async")
    with pytest.raises(SearchUnavailable) as caught:
        run(project, standin, ["cats", "dogs"])
    message = str(caught.value)
    assert message.startswith("Could not reach Bing image search (") and "page" not in message  # the CLI says it too
    assert project.class_names() == [] and project.rejected_inputs() == []
    assert list(project.images_dir.iterdir()) == []


def test_a_search_failing_later_ends_only_that_class(project, standin):
    standin.per_query = 3
    standin.down = {"bats"}
    report, _ = run(project, standin, ["ants", "bats", "cods"])
    assert [(c.saved, c.failed) for c in report.classes] == [(3, {}), (0, {"search_unavailable": 1}), (3, {})]
    assert project.class_names() == ["ants", "cods"]


def test_a_search_failing_at_the_start_aborts(project, standin):
    standin.down = {"ants"}
    with pytest.raises(SearchUnavailable, match=r"\(it answered HTTP 503\)"):
        run(project, standin, ["ants", "bats"])
    assert [hit.params["q"] for hit in standin.hits] == ["ants"]


@pytest.mark.parametrize("path", ["/missing/1.jpg", "/hang/1.jpg"])
def test_search_errors_and_timeouts_are_unavailable(standin, monkeypatch, path):
    monkeypatch.setenv("TRANSFERLAB_SEARCH_URL", f"http://127.0.0.1:{standin.port}{path}")
    with pytest.raises(SearchUnavailable, match="HTTP 404|no answer in time"):
        search_page("cats", 0, 35, timeout=0.3)


def test_a_bad_class_name_fails_before_any_traffic(project, standin):
    with pytest.raises(StoreError):
        run(project, standin, ["ok", "a/b"])
    assert standin.hits == []


# ---- private addresses -------------------------------------------------------------------------


def test_private_addresses_are_refused_before_connecting(project, bing_standin, loopback_only, monkeypatch):
    monkeypatch.delenv("TRANSFERLAB_ALLOW_PRIVATE_HOSTS", raising=False)
    bing_standin.results["private"] = [PRIVATE_URL, bing_standin.photo_url(9), bing_standin.redirect_url(PRIVATE_URL)]

    with Downloader(FAST, resolve=bing_standin.resolve) as pool:
        report = collect(project, CollectRequest(["private"]), downloader=pool)

    assert report.classes[0].failed == {"blocked_address": 3}  # the stand-in itself is loopback, so refused too
    assert bing_standin.image_hits() == []
    assert {address for address, _ in loopback_only} == {"127.0.0.1"}  # the search only
    assert project.class_names() == []


def test_a_host_with_any_private_address_is_refused(loopback_only):
    with Downloader(FAST, resolve=lambda host, port: ["93.184.216.34", "10.0.0.1"]) as pool:
        assert pool.fetch("https://example.com/a.jpg").reason == "blocked_address"
    assert loopback_only == []


@pytest.mark.parametrize("address, public_only, with_private", [
    ("93.184.216.34", True, True),
    ("2606:2800:220:1:248:1893:25c8:1946", True, True),
    ("10.255.255.1", False, True),
    ("192.168.1.1", False, True),
    ("127.0.0.1", False, True),
    ("::1", False, True),
    ("169.254.169.254", False, True),  # cloud metadata
    ("fe80::1", False, True),
    ("::ffff:10.0.0.1", False, True),
    ("100.64.0.1", False, True),
    ("224.0.0.1", False, False),
    ("0.0.0.0", False, False),
    ("240.0.0.1", False, False),
])
def test_address_policy(address, public_only, with_private):
    assert address_allowed(address, allow_private=False) is public_only
    assert address_allowed(address, allow_private=True) is with_private

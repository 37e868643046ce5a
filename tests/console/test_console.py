"""The web console in a real headless Chromium against a real server (API, worker, console).

Every check of what the console shows is compared with what the API answers for the same
question, asked independently over HTTP.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.console.conftest import (
    ARTIFACTS,
    PASSWORD,
    SLOW_BUCKET_OBJECTS,
    TALLY_BUCKET_OBJECTS,
    Console,
    sign_in,
)

CONSOLE_FILES = {
    "index.html": "text/html",
    "app.js": "javascript",
    "api.js": "javascript",
    "format.js": "javascript",
    "jobs.js": "javascript",
    "job.js": "javascript",
    "app.css": "text/css",
}
ACTIVE = {"EXAMINING", "PROCESSING", "EXECUTING"}


def _status(console: Console, job_id: int) -> dict[str, Any]:
    with console.api() as api:
        answer = api.post("/mapi/v1/jobs/status", json={"jobId": {"id": job_id}})
        answer.raise_for_status()
        status: dict[str, Any] = answer.json()["status"]
        return status


def _list(console: Console, **body: Any) -> dict[str, Any]:
    with console.api() as api:
        answer = api.post("/mapi/v1/jobs/list", json=body)
        answer.raise_for_status()
        listed: dict[str, Any] = answer.json()
        return listed


def _wait_idle(console: Console, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(j["jobState"] in ACTIVE for j in _list(console, pageSize=500)["jobs"]):
        assert time.monotonic() < deadline, "jobs still active"
        time.sleep(0.5)


def _row_ids(page: Page) -> list[int]:
    return [
        int(v)
        for v in page.locator("#jobs-body tr").evaluate_all(
            "rows => rows.map(r => r.dataset.jobId)"
        )
    ]


def _bar_value(bar: Locator) -> int:
    return int(bar.get_attribute("aria-valuenow") or "-1")


def _create_in_dialog(page: Page, job_type: str, bucket: str, **params: str) -> None:
    page.get_by_role("button", name="New job").click()
    dialog = page.get_by_role("dialog", name="New job")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Type").select_option(job_type)
    dialog.get_by_label("Bucket").fill(bucket)
    for i, (key, value) in enumerate(params.items(), start=1):
        dialog.get_by_role("button", name="+ Add parameter").click()
        dialog.get_by_label(f"Parameter {i} key").fill(key)
        dialog.get_by_label(f"Parameter {i} value").fill(value)
    dialog.get_by_role("button", name="Create job").click()


def _created_id(page: Page) -> int:
    notice = page.locator("#notice")
    expect(notice).to_have_text(re.compile(r"^Job -?\d+ created\.$"))
    match = re.search(r"-?\d+", notice.inner_text())
    assert match is not None
    return int(match.group())


# --- serving -----------------------------------------------------------------------------


def test_console_is_served_self_contained_with_security_headers(console_server: Console) -> None:
    with httpx.Client(base_url=console_server.url) as client:
        bare = client.get("/console")
        assert bare.status_code in (301, 302, 307, 308)
        assert (
            httpx.URL(console_server.url + "/console").join(bare.headers["location"]).path
            == "/console/"
        )
        for name, kind in CONSOLE_FILES.items():
            answer = client.get("/console/" + ("" if name == "index.html" else name))
            assert answer.status_code == 200, name
            assert kind in answer.headers["content-type"], name
            assert "script-src 'self'" in answer.headers["content-security-policy"]
            assert answer.headers["x-content-type-options"] == "nosniff"
            # no CDN, no external font: it must work on a host without internet
            assert not re.search(r"(src|href|url\()\s*=?\s*[\"']?(https?:)?//", answer.text), name
        assert client.get("/console/nope.js").status_code == 404


# --- sign-in -----------------------------------------------------------------------------


def test_wrong_password_shows_an_error_and_stays_on_sign_in(
    page: Page, console_server: Console
) -> None:
    sign_in(page, console_server, password="not-" + PASSWORD)
    banner = page.get_by_role("alert").filter(has_text="Sign-in failed")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Wrong username or password")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#view-jobs")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('objectjobs.session')") is None


def test_sign_in_shows_the_jobs_and_the_user(page: Page, console_server: Console) -> None:
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#who")).to_have_text("admin")
    with console_server.api() as api:
        serial = api.post("/mapi/v1/serial_number/get", json={}).json()["value"]
    expect(page.locator("#serial")).to_have_text(f"S/N {serial}")
    headers = page.locator("#jobs-table thead th").all_inner_texts()
    assert headers[:7] == ["Job", "Type", "Bucket", "State", "Progress", "Started", "Completed"]
    # the CSRF cookie the console fetched is what its POSTs carried (they succeeded)
    cookies = {c["name"] for c in page.context.cookies()}
    assert {"XSRF-TOKEN", "vertx-web.session"} <= cookies


# --- the main scenario: create, watch, open, cancel ----------------------------------------


def test_create_watch_open_and_cancel_a_job(page: Page, console_server: Console) -> None:
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    _create_in_dialog(page, "METRIC_RECONCILIATION", "slow", objectsPerSecond="40")
    job_id = _created_id(page)
    expect(page.get_by_role("dialog", name="New job")).to_be_hidden()

    created = _status(console_server, job_id)
    assert created["bucketName"] == "slow"
    assert created["jobType"] == "METRIC_RECONCILIATION"
    assert created["jobParams"] == {"objectsPerSecond": "40"}

    row = page.locator(f'#jobs-body tr[data-job-id="{job_id}"]')
    expect(row).to_contain_text("METRIC_RECONCILIATION")
    expect(row).to_contain_text("slow")
    bar = row.get_by_role("progressbar")
    # totals come from jobs/describe once EXAMINING ends
    expect(bar).to_have_attribute("aria-valuemax", str(SLOW_BUCKET_OBJECTS), timeout=30_000)
    page.wait_for_function(
        f"""() => Number(document.querySelector('tr[data-job-id="{job_id}"] [role=progressbar]')
            ?.getAttribute('aria-valuenow')) > 0""",
        timeout=30_000,
    )
    shown = _bar_value(bar)
    status = _status(console_server, job_id)
    # what the bar shows was true on the server a moment ago: counters only grow
    assert 0 < shown <= status["jobStats"]["processed"] + status["jobStats"]["failed"]
    assert status["jobState"] in ACTIVE
    # live refresh: the bar moves on without any reload
    page.wait_for_function(
        f"""() => Number(document.querySelector('tr[data-job-id="{job_id}"] [role=progressbar]')
            .getAttribute('aria-valuenow')) > {shown}""",
        timeout=15_000,
    )

    # the job page
    row.get_by_role("link", name=str(job_id)).click()
    expect(page).to_have_url(re.compile(rf"#/jobs/{job_id}$"))
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    summary = page.locator("#job-summary")
    expect(summary).to_contain_text("METRIC_RECONCILIATION")
    expect(summary).to_contain_text("slow")
    expect(summary).to_contain_text("objectsPerSecond=40")
    counts = page.locator("#job-counts")
    expect(counts).to_contain_text(f"{SLOW_BUCKET_OBJECTS:,}")
    expect(page.locator("#failed-empty")).to_be_visible()
    expect(page.locator("#job-progress").get_by_role("progressbar")).to_have_attribute(
        "aria-valuemax", str(SLOW_BUCKET_OBJECTS)
    )

    # cancel, but change one's mind: the job keeps running
    page.get_by_role("button", name="Cancel", exact=True).click()
    confirm = page.get_by_role("dialog", name=f"Cancel job {job_id}?")
    expect(confirm).to_be_visible()
    confirm.get_by_role("button", name="Keep running").click()
    expect(confirm).to_be_hidden()
    assert _status(console_server, job_id)["jobState"] in ACTIVE
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-job.png"), full_page=True)

    # back to the list and cancel from the job's row
    page.get_by_role("link", name="All jobs").click()
    row.get_by_role("button", name=f"Cancel job {job_id}").click()
    expect(confirm).to_be_visible()
    confirm.get_by_role("button", name="Cancel job").click()
    expect(row).to_have_attribute("data-state", "CANCELLED")
    expect(row.get_by_role("button")).to_have_count(0)
    expect(row.locator("td").nth(6)).not_to_have_text("\N{EN DASH}")
    after = _status(console_server, job_id)
    assert after["jobState"] == "CANCELLED"
    assert after["completeTime"] is not None
    expect(row.locator("td").nth(6)).to_contain_text(after["completeTime"].replace("T", " "))


def test_finished_metric_job_page_shows_plan_and_usage(page: Page, console_server: Console) -> None:
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    _create_in_dialog(page, "METRIC_RECONCILIATION", "tally")
    job_id = _created_id(page)
    row = page.locator(f'#jobs-body tr[data-job-id="{job_id}"]')
    expect(row).to_have_attribute("data-state", "COMPLETE", timeout=30_000)
    row.get_by_role("link", name=str(job_id)).click()

    with console_server.api() as api:
        described = api.post("/mapi/v1/jobs/describe", json={"jobId": {"id": job_id}}).json()
    assert described["totals"]["objects"] == TALLY_BUCKET_OBJECTS
    bar = page.locator("#job-progress").get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", str(TALLY_BUCKET_OBJECTS))
    expect(bar).to_have_attribute("aria-valuemax", str(TALLY_BUCKET_OBJECTS))
    plan_rows = page.locator("#job-plan tbody tr")
    expect(plan_rows).to_have_count(len(described["plan"]))
    for action, amount in described["plan"].items():
        expect(plan_rows.filter(has_text=action)).to_contain_text(f"{amount['objects']:,}")

    usage = page.locator("#job-usage-card")
    expect(usage).to_be_visible()
    current = usage.locator("tr").filter(has_text="Current objects")
    cells = current.locator("td")
    expect(cells.nth(1)).to_have_text(f"{described['usage']['after']['currentObjects']:,}")
    delta = described["usage"]["delta"]["currentObjects"]
    expect(cells.nth(2)).to_have_text(f"+{delta:,}" if delta > 0 else f"{delta:,}")
    assert described["usage"]["after"]["currentObjects"] == TALLY_BUCKET_OBJECTS
    expect(page.locator("#job-cancel")).to_be_hidden()

    # a second count of the same bucket: its "before" is the first one's "after"
    with console_server.api() as api:
        answer = api.post(
            "/mapi/v1/jobs/create",
            json={"jobType": "METRIC_RECONCILIATION", "bucketName": "tally"},
        )
        assert answer.status_code == 200, answer.text
    again = answer.json()["jobStatus"]["jobId"]["id"]
    _wait_idle(console_server)
    page.goto(console_server.console_url + f"#/jobs/{again}")
    expect(page.get_by_role("heading", name=f"Job {again}")).to_be_visible()
    expect(usage).to_be_visible()
    expect(usage).not_to_contain_text("No usage was recorded")
    expect(usage).not_to_contain_text("null")
    cells = usage.locator("tr").filter(has_text="Current objects").locator("td")
    expect(cells.nth(0)).to_have_text(f"{TALLY_BUCKET_OBJECTS:,}")
    expect(cells.nth(1)).to_have_text(f"{TALLY_BUCKET_OBJECTS:,}")
    expect(cells.nth(2)).to_have_text("0")


def test_api_errors_appear_in_the_banner(page: Page, console_server: Console) -> None:
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    cases: list[tuple[dict[str, Any], int]] = [
        ({"jobType": "METRIC_RECONCILIATION", "bucketName": "no-such-bucket"}, 404),
        (
            {
                "jobType": "METRIC_RECONCILIATION",
                "bucketName": "small",
                "jobParams": {"colour": "blue"},
            },
            400,
        ),
    ]
    dialog = page.get_by_role("dialog", name="New job")
    for body, status in cases:
        with console_server.api() as api:
            expected = api.post("/mapi/v1/jobs/create", json=body)
        assert expected.status_code == status
        error = expected.json()
        if not dialog.is_visible():
            page.get_by_role("button", name="New job").click()
        page.locator("#param-rows").evaluate("rows => rows.replaceChildren()")
        dialog.get_by_label("Bucket").fill(body["bucketName"])
        for i, (key, value) in enumerate(body.get("jobParams", {}).items(), start=1):
            dialog.get_by_role("button", name="+ Add parameter").click()
            dialog.get_by_label(f"Parameter {i} key").fill(key)
            dialog.get_by_label(f"Parameter {i} value").fill(value)
        dialog.get_by_role("button", name="Create job").click()
        alert = dialog.get_by_role("alert")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text(error["code"])
        expect(alert).to_contain_text(error["message"])
        expect(alert).to_contain_text(f"{error['code']} {error['message']}{error['details']}")
        if "null" not in str(error):
            expect(alert).not_to_contain_text("null")
    dialog.get_by_role("button", name="Close").click()

    # an error outside a dialog uses the page's banner: a job that does not exist
    page.goto(console_server.console_url + "#/jobs/12345")
    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("12345")
    expect(banner).to_have_attribute("role", "alert")


# --- list: filters and paging ----------------------------------------------------------------


def test_bucket_and_state_filters_and_paging(page: Page, console_server: Console) -> None:
    with console_server.api() as api:
        for i in range(5):
            answer = api.post(
                "/mapi/v1/jobs/create",
                json={
                    "jobType": "METRIC_RECONCILIATION",
                    "bucketName": "small",
                    "jobParams": {"prefix": f"dir0{i}/"},
                },
            )
            assert answer.status_code == 200, answer.text
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()

    page.goto(console_server.console_url + "#/jobs?bucket=small&size=2")
    expect(page.locator("#filter-bucket")).to_have_value("small")
    rows = page.locator("#jobs-body tr")
    expect(rows).to_have_count(2)
    first = _list(console_server, bucketName="small", pageSize=2)
    assert _row_ids(page) == [j["jobId"]["id"] for j in first["jobs"]]
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()

    page.get_by_role("button", name="Next").click()
    second = _list(console_server, bucketName="small", pageSize=2, pageToken=first["pageToken"])
    expected_second = [j["jobId"]["id"] for j in second["jobs"]]
    page.wait_for_function(
        f"() => [...document.querySelectorAll('#jobs-body tr')].map(r => Number(r.dataset.jobId))"
        f".join() === '{','.join(map(str, expected_second))}'"
    )
    expect(page.locator("#jobs-page")).to_contain_text("Page 2")
    assert not set(expected_second) & {j["jobId"]["id"] for j in first["jobs"]}
    for cell in page.locator("#jobs-body tr td:nth-child(3)").all_inner_texts():
        assert cell.startswith("small")

    page.get_by_role("button", name="Previous").click()
    expect(page.locator("#jobs-page")).to_contain_text("Page 1")
    assert _row_ids(page) == [j["jobId"]["id"] for j in first["jobs"]]

    # state: filtered in the browser, on the page shown, and the control says so
    state_label = page.locator("label", has=page.locator("#filter-state"))
    assert "no state filter" in (state_label.get_attribute("title") or "")
    _wait_idle(console_server)
    page.goto(console_server.console_url + "#/jobs?state=COMPLETE&size=500")
    everything = _list(console_server, pageSize=500)["jobs"]
    complete = [j["jobId"]["id"] for j in everything if j["jobState"] == "COMPLETE"]
    assert complete, "earlier jobs should have completed"
    page.wait_for_function(
        f"() => document.querySelectorAll('#jobs-body tr').length === {len(complete)}",
        timeout=30_000,
    )
    assert sorted(_row_ids(page)) == sorted(complete)
    states = page.locator("#jobs-body tr").evaluate_all("rs => rs.map(r => r.dataset.state)")
    assert set(states) == {"COMPLETE"}
    expect(page.locator("#filter-state")).to_have_value("COMPLETE")


# --- session handling ------------------------------------------------------------------------


def _stored_access(page: Page) -> str:
    value: str = page.evaluate("JSON.parse(sessionStorage.getItem('objectjobs.session')).access")
    return value


def test_access_token_is_refreshed_before_it_expires(page: Page, console_server: Console) -> None:
    # the server's tokens live 10 s (the shortest allowed); the session must outlive them
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    first = _stored_access(page)
    page.wait_for_function(
        f"() => JSON.parse(sessionStorage.getItem('objectjobs.session')).access !== '{first}'",
        timeout=15_000,
    )
    page.wait_for_timeout(5_000)  # past the first token's expiry, with live refresh running
    expect(page.locator("#view-jobs")).to_be_visible()
    expect(page.locator("#banner")).to_be_hidden()
    expect(page.locator("#updated")).to_contain_text("Updated")


def test_a_rejected_session_returns_to_sign_in(page: Page, console_server: Console) -> None:
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.evaluate(
        """() => {
          const s = JSON.parse(sessionStorage.getItem('objectjobs.session'));
          s.access = 'forged.' + s.access;
          s.refresh = 'forged.' + s.refresh;
          sessionStorage.setItem('objectjobs.session', JSON.stringify(s));
        }"""
    )
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#banner")).to_contain_text("sign in again")
    assert page.evaluate("sessionStorage.getItem('objectjobs.session')") is None


def test_sign_out_forgets_the_session(page: Page, console_server: Console) -> None:
    sign_in(page, console_server)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('objectjobs.session')") is None
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#view-jobs")).to_be_hidden()


def test_a_viewer_sees_only_their_jobs_and_no_create_control(
    page: Page, console_server: Console
) -> None:
    # added the way an operator does it: the CLI, on the server's own job store
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "objectjobs",
            "user",
            "add",
            "watcher",
            "--role",
            "viewer",
            "--password-stdin",
            "--data-dir",
            str(console_server.data_dir),
        ],
        input=b"watcher-Pa55word\nwatcher-Pa55word\n",
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OBJECTJOBS_")},
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr.decode()
    assert _list(console_server)["jobs"], "the admin sees jobs"
    sign_in(page, console_server, password="watcher-Pa55word", username="watcher")
    expect(page.locator("#who")).to_have_text("watcher")
    expect(page.locator("#jobs-empty")).to_be_visible()
    expect(page.locator("#jobs-body tr")).to_have_count(0)
    expect(page.get_by_role("button", name="New job")).to_be_hidden()


# --- last: a picture of the console with the jobs of this module and one running ------------


def test_screenshot_of_the_jobs_list_with_a_running_job(
    page: Page, console_server: Console
) -> None:
    _wait_idle(console_server)
    with console_server.api() as api:
        answer = api.post(
            "/mapi/v1/jobs/create",
            json={
                "jobType": "METRIC_RECONCILIATION",
                "bucketName": "slow",
                "jobParams": {"objectsPerSecond": "40", "fix": "false"},
            },
        )
        assert answer.status_code == 200, answer.text
        job_id = answer.json()["jobStatus"]["jobId"]["id"]
    try:
        sign_in(page, console_server)
        bar = page.locator(f'#jobs-body tr[data-job-id="{job_id}"] [role=progressbar]')
        expect(bar).to_have_attribute("aria-valuemax", str(SLOW_BUCKET_OBJECTS), timeout=30_000)
        page.wait_for_function(
            f"""() => Number(document.querySelector(
                'tr[data-job-id="{job_id}"] [role=progressbar]')
                .getAttribute('aria-valuenow')) > 0""",
            timeout=30_000,
        )
        page.locator("#jobs-body tr").first.hover()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
    finally:
        with console_server.api() as api:
            api.post("/mapi/v1/jobs/cancel", json={"jobId": {"id": job_id}}).raise_for_status()

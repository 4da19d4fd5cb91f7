"""The web console in headless Chromium (Debian's, driven by Playwright) against the whole
stack on the emulator. Screenshots of each page go to `test-artifacts/console/`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from qjt.demo import BELL_NO_MEASURE_QASM as BELL_NO_MEASURE
from qjt.demo import BELL_QASM as BELL
from tests.e2e.conftest import TOKEN_A, TOKEN_B, Gateway, User
from tests.helpers.stack import wait_until

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "console"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make tools` installs Debian's chromium package"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def logged_in(browser: Browser, gateway: Gateway, user: User) -> Page:
    viewport = {"width": 1280, "height": 900}
    context = browser.new_context(base_url=gateway.stack.api_url, viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto("/jobs")
    expect(page).to_have_url(f"{gateway.stack.api_url}/login")  # no session: the login form
    page.fill("input[name=api_key]", user.api_key)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(f"{gateway.stack.api_url}/dashboard")
    return page


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def secrets_of(gateway: Gateway) -> list[str]:
    return [gateway.a.api_key, gateway.b.api_key, TOKEN_A, TOKEN_B, gateway.stack.fernet_key]


def test_log_in_watch_a_job_live_open_it_cancel_another_filter_and_analytics(
    browser: Browser, gateway: Gateway
) -> None:
    a = gateway.a
    page = logged_in(browser, gateway, a)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["qjt_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    expect(page.locator("#backends tr.least-busy")).to_have_count(1)
    expect(page.locator("ol.recommendations li").first).to_be_visible(timeout=20_000)
    shot(page, "dashboard")

    backend = a.quickest_backend()
    gateway.emulator.set_faults(hold_backends=[backend])  # the job stays queued until released
    try:
        page.goto("/jobs")
        expect(page.locator("#live")).to_have_text("Live updates: on", timeout=20_000)
        page.evaluate("window.__sameDocument = true")
        job_id = a.submit(primitive="sampler", circuits=[BELL], backend=backend, shots=500)
        row = page.locator(f"tr[data-job='{job_id}']")
        expect(row.locator("[data-status]")).to_have_text("Queued", timeout=60_000)
        shot(page, "jobs-queued")
        gateway.emulator.set_faults()
        expect(row.locator("[data-status]")).to_have_text("Completed", timeout=180_000)
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        shot(page, "jobs-completed")

        row.get_by_role("link", name="Details").click()
        expect(page).to_have_url(f"{gateway.stack.api_url}/jobs/{job_id}")
        timeline = page.locator("#timeline li")
        expect(timeline.first).to_contain_text("Queued")
        expect(timeline.last).to_contain_text("Completed")
        expect(page.locator("#counts .bar-row").first).to_be_visible()
        assert page.locator("#counts .bar-row code").first.inner_text() in ("00", "11")
        shot(page, "job")

        gateway.emulator.set_faults(hold_backends=[backend])
        other = a.submit(primitive="sampler", circuits=[BELL], backend=backend, shots=100)
        a.wait_status(other, "Queued", timeout_s=60)
        page.goto(f"/jobs/{other}")
        expect(page.locator("#prediction")).to_contain_text("Predicted start")
        shot(page, "job-queued")
        page.goto("/jobs")
        page.locator(f"tr[data-job='{other}'] form[data-cancel] button").click()
        expect(page).to_have_url(f"{gateway.stack.api_url}/jobs")
        a.wait_status(other, "Cancelled", timeout_s=90)
        expect(page.locator(f"tr[data-job='{other}'] [data-status]")).to_have_text(
            "Cancelled", timeout=30_000
        )
    finally:
        gateway.emulator.set_faults()

    export = page.request.get("/v1/jobs/export?format=csv")  # the Export CSV button's link
    assert export.ok and job_id in export.text()
    assert page.locator("a.button", has_text="Export CSV").get_attribute("href") == (
        "/v1/jobs/export?format=csv"
    )

    private = next(i["crn"] for i in a.http.get("/v1/accounts/me/instances").json()
                   if i["private"])  # fmt: skip
    page.locator("#instances tr", has_text=private).get_by_role("button", name="Clear").click()
    expect(page.locator("#instances tr", has_text=private)).to_contain_text("no")
    page.fill("#instances form.inline input[name=crn]", private)
    page.click("#instances form.inline button[type=submit]")
    expect(page.locator("#instances tr", has_text=private)).to_contain_text("yes")
    shot(page, "jobs-instances")

    page.select_option("select[name=status]", "Completed")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(f"{gateway.stack.api_url}/jobs?backend=&status=Completed&tag=")
    badges = page.locator("#jobs [data-status]").all_inner_texts()
    assert badges and set(badges) == {"Completed"}
    shot(page, "jobs-filtered")

    page.goto(f"/backends/{backend}")
    expect(page.locator("#qubits tbody tr").first).to_be_visible()
    shot(page, "backend")
    page.goto(f"/backends/{backend}/analytics")
    expect(page.locator("body[data-charts-ready=true]")).to_have_count(1)
    page.select_option("#qubit-filter", ["1", "2"])
    page.click("#analytics-filters button[type=submit]")
    expect(page).to_have_url(
        f"{gateway.stack.api_url}/backends/{backend}/analytics?range=7d&metric=t1_us&qubit=1&qubit=2"
    )
    expect(page.locator("body[data-charts-ready=true]")).to_have_count(1)
    assert page.locator("#qubit-filter option:checked").all_inner_texts() == ["1", "2"]
    shot(page, "analytics")

    html = "".join(
        page.goto(path).text() for path in  # type: ignore[union-attr]
        ("/dashboard", "/jobs", f"/jobs/{job_id}", f"/backends/{backend}",
         f"/backends/{backend}/analytics")
    )  # fmt: skip
    for secret in secrets_of(gateway):
        assert secret not in html


def test_an_estimator_job_page_shows_its_expectation_values(
    browser: Browser, gateway: Gateway
) -> None:
    a = gateway.a
    zz = [[{"pauli": "ZZ", "coefficient": 1.0}]]
    job_id = a.submit(primitive="estimator", circuits=[BELL_NO_MEASURE], observables=zz,
                      backend=a.quickest_backend())  # fmt: skip
    job = a.wait_status(job_id, "Completed")
    [expected] = job["result"]["estimator"]
    page = logged_in(browser, gateway, a)
    page.goto(f"/jobs/{job_id}")
    row = page.locator("#values tbody tr").first
    expect(row).to_contain_text(f"{expected['expectation_value']:.5f}")
    expect(row).to_contain_text(f"{expected['standard_error']:.5f}")
    expect(page.locator("#counts")).to_have_count(0)  # an Estimator job has no counts
    shot(page, "job-estimator")


def test_another_users_job_page_is_a_404(browser: Browser, gateway: Gateway) -> None:
    job_id = gateway.a.submit(primitive="aer", circuits=[BELL], shots=20)
    page = logged_in(browser, gateway, gateway.b)
    answer = page.goto(f"/jobs/{job_id}")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("404")
    shot(page, "not-found")


def test_forms_without_the_csrf_token_are_refused(gateway: Gateway) -> None:
    a = gateway.a
    job_id = a.submit(primitive="aer", circuits=[BELL], shots=20)
    base = gateway.stack.api_url
    # Plain HTTP here, so the client would hold back the Secure cookies: send them by hand.
    with httpx.Client(base_url=base, follow_redirects=False) as http:
        form = http.get("/login")
        csrf = form.cookies["qjt_csrf"]
        assert f'value="{csrf}"' in form.text
        http.headers["Cookie"] = f"qjt_csrf={csrf}"
        refused = http.post("/login", data={"api_key": a.api_key})
        assert refused.status_code == 403 and "CSRF" in refused.text
        wrong = http.post("/login", data={"api_key": a.api_key, "csrf_token": "forged"})
        assert wrong.status_code == 403
        ok = http.post("/login", data={"api_key": a.api_key, "csrf_token": csrf})
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        session = ok.cookies["qjt_session"]
        http.headers["Cookie"] = f"qjt_csrf={csrf}; qjt_session={session}"
        assert http.get("/jobs").status_code == 200
        forms = [(f"/jobs/{job_id}/cancel", {}), ("/instances", {"crn": "crn:v1:x"}),
                 ("/instances/remove", {"crn": "crn:v1:x"}), ("/logout", {})]  # fmt: skip
        for path, data in forms:
            answer = http.post(path, data=data)
            assert answer.status_code == 403, (path, answer.status_code)
        # The session cookie never authorises a change through the JSON API either.
        cancel = http.post(f"/v1/jobs/{job_id}/cancel")
        assert cancel.status_code == 401
    wait_until(lambda: a.job(job_id)["status"] == "Completed", 90, "the untouched job completing")

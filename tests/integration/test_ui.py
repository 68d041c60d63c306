"""The Streamlab page in the Airflow UI, on the real stack: its login, and its numbers in a browser.

The browser is Debian's chromium (`make test` installs it: streamlab/prereqs.py), driven by
Playwright. The numbers on the page are checked against an independent Kafka client and the
landing report read through WebHDFS. With STREAMLAB_SCREENSHOT=docs/streamlab-ui.png the page's
screenshot (the one in the README) is written there too.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid

import pytest

from streamlab import lake, landing, prereqs
from streamlab.airflow_client import AirflowClient

pytestmark = pytest.mark.integration

TOPIC = "Hello-Kafka"


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def plugin_paths() -> list[str]:
    """Every route of the app the plugin mounts at /streamlab (read from the app itself)."""
    from streamlab.ui import Sections, create_app

    paths = sorted({r.path for r in create_app(Sections()).routes})
    assert "/" in paths and "/api/overview" in paths
    return paths


def forged_token() -> str:
    """A well-formed JWT for user admin, signed with a key that is not the stack's."""
    import jwt

    now = int(time.time())
    claims = {
        "sub": "admin",
        "role": "admin",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "aud": "apache-airflow",
    }
    return jwt.encode(claims, "not-the-secret-" + uuid.uuid4().hex, algorithm="HS512")


def test_every_endpoint_refuses_a_caller_without_a_valid_login(stack):
    client = AirflowClient(stack)
    secrets = [v for v in stack.secrets().values() if v] + [stack.admin_credentials()[1]]
    paths = plugin_paths()
    for path in paths:
        url = f"{stack.airflow_url}/streamlab{path}"
        for how, headers in [
            ("no credentials", {}),
            ("a bearer token that is not a JWT", {"Authorization": "Bearer nonsense"}),
            ("a forged JWT", {"Authorization": f"Bearer {forged_token()}"}),
            ("a forged cookie", {"Cookie": f"_token={forged_token()}"}),
        ]:
            code, body = get(url, headers)
            assert code in (401, 403), f"GET /streamlab{path} with {how}: {code} {body[:200]!r}"
            assert TOPIC.encode() not in body
        code, body = get(url, {"Authorization": f"Bearer {client.token}"})
        assert code == 200, f"GET /streamlab{path} logged in: {code} {body[:300]!r}"
        leaked = [s[:4] + "..." for s in secrets if s.encode() in body]
        assert not leaked, f"/streamlab{path} answers with a secret of the stack: {leaked}"


def test_airflow_lists_the_plugin_and_its_nav_entry(stack):
    plugins = AirflowClient(stack).get("/plugins")["plugins"]
    [mine] = [p for p in plugins if p["name"] == "streamlab"]
    assert [v["name"] for v in mine["external_views"]] == ["Streamlab"]
    assert mine["external_views"][0]["href"] == "/streamlab/"
    assert [a["url_prefix"] for a in mine["fastapi_apps"]] == ["/streamlab"]


def produce_lines(stack, n: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for i in range(n):
        producer.produce(TOPIC, f"ui test line {i} du texte pour la page".encode())
    assert producer.flush(60) == 0


def end_offset(stack) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"ui-test-{uuid.uuid4().hex}"})
    try:
        meta = c.list_topics(TOPIC, timeout=30).topics[TOPIC]
        return sum(c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1] for p in meta.partitions)
    finally:
        c.close()


def land_through_airflow(stack) -> str:
    client = AirflowClient(stack)
    deadline = time.time() + 300
    while client.dag("kafka_to_hdfs_landing") is None:
        assert time.time() < deadline, "kafka_to_hdfs_landing not parsed"
        time.sleep(5)
    run_id = client.trigger("kafka_to_hdfs_landing")["dag_run_id"]
    deadline = time.time() + 900
    while (state := client.run_state("kafka_to_hdfs_landing", run_id)) not in ("success", "failed"):
        assert time.time() < deadline, f"landing run {run_id} still {state} after 900 s"
        time.sleep(5)
    assert state == "success", f"landing run {run_id} {state}"
    return run_id


def number(text: str) -> int | None:
    digits = re.sub(r"[^0-9]", "", text)
    return int(digits) if digits else None  # "–" while a section has no figure


@pytest.mark.timeout(1500)
def test_the_page_in_a_browser_shows_what_kafka_and_hdfs_hold(stack, webhdfs, tmp_path):
    from playwright.sync_api import sync_playwright

    produce_lines(stack, 37)
    produced_end = end_offset(stack)
    run_id = land_through_airflow(stack)
    with webhdfs.read(lake.report_path(run_id)) as r:
        report = json.loads(r.read())
    records = sum(t["totals"]["records"] for t in report["topics"])
    # A scheduled run that overlapped ours may have landed the lines: this run's records are
    # whatever its report says, and the landing as a whole is past them.
    commit = landing.latest_commit(landing.WebHdfsFileSystem(webhdfs), lake.TopicPaths(TOPIC))
    assert sum(p["end"] for p in commit["partitions"].values()) >= produced_end
    produce_lines(stack, 5)  # past the landed end: the page must show Kafka's end, not the landing's
    expected_end = end_offset(stack)

    user, password = stack.admin_credentials()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=prereqs.browser(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(stack.airflow_url + "/")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.get_by_role("link", name="Streamlab").first.click(timeout=60_000)
            page.wait_for_url(re.compile(r".*/plugin/streamlab$"), timeout=60_000)
            frame = page.frame_locator("iframe").first
            frame.locator("body[data-loaded='1']").wait_for(timeout=60_000)
            assert frame.locator(f"tr[data-topic='{TOPIC}'] b").first.inner_text() == TOPIC
            # The page refreshes itself every 5 s from snapshots at most 5 s old.
            shown_end = shown_records = None
            deadline = time.time() + 90
            while time.time() < deadline:
                shown_end = number(frame.locator(f"td.end-offset[data-topic='{TOPIC}']").inner_text())
                row = frame.locator(f"#landing-runs tr[data-run='{run_id}'] td.records")
                shown_records = number(row.inner_text()) if row.count() else None
                if (shown_end, shown_records) == (expected_end, records):
                    break
                time.sleep(2)
            assert shown_end == expected_end, f"page end offset {shown_end}, Kafka says {expected_end}"
            assert shown_records == records, (
                f"page shows {shown_records} records for {run_id}, report {records}"
            )
            link = frame.locator(f"#landing-runs tr[data-run='{run_id}'] a").get_attribute("href")
            assert link.startswith("/dags/kafka_to_hdfs_landing/runs/")
            for path in [tmp_path / "streamlab-ui.png", os.environ.get("STREAMLAB_SCREENSHOT")]:
                if path:
                    page.screenshot(path=str(path))
        finally:
            browser.close()

"""streamlab/alerts.py: the deadlines the DAGs declare, and the callback the triggerer awaits.

The callback is run here the way the triggerer runs it (Airflow's own `CallbackTrigger`, with the
context the scheduler builds in `Deadline.handle_miss`), and its mail goes through the real SMTP
provider to a small SMTP server on loopback. The end-to-end check on a real stack is
tests/integration/test_deadline_alerts.py.
"""

from __future__ import annotations

import asyncio
import email
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from airflow.sdk import AsyncCallback, DeadlineReference

from streamlab import alerts

DEADLINE = datetime(2026, 3, 1, 10, 30, tzinfo=timezone.utc)


def context(run_type: str = "manual", run_id: str = "manual__held") -> dict:
    """What `Deadline.handle_miss` passes: the run as the REST API shows it, and the deadline."""
    return {
        "dag_run": {
            "dag_id": "kafka_to_hdfs_landing",
            "dag_run_id": run_id,
            "run_type": run_type,
            "state": "queued",
            "queued_at": "2026-03-01T10:00:00.123456Z",
            "logical_date": None,
        },
        "deadline": {"id": "0190f0e0-0000-7000-8000-000000000000", "deadline_time": DEADLINE},
    }


# ---- declarations ----------------------------------------------------------------------------


def test_landing_deadline_counts_from_queued_at_30_minutes_by_default():
    alert = alerts.landing_deadline({})
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(minutes=30)
    assert isinstance(alert.callback, AsyncCallback)
    assert alert.callback.path == "streamlab.alerts.deadline_missed"
    assert alert.callback.kwargs == {"what": "landing run not finished 30 min after it was queued"}
    json.dumps(alert.callback.serialize())  # stored in the metadata database as JSON


def test_landing_deadline_from_the_environment_and_0_declares_none():
    env = {alerts.LANDING_DEADLINE_ENV: "1.5"}
    assert alerts.landing_deadline(env).interval == timedelta(seconds=90)
    assert "1 min 30 s after it was queued" in alerts.landing_deadline(env).callback.kwargs["what"]
    assert alerts.landing_deadline({alerts.LANDING_DEADLINE_ENV: "0"}) is None
    assert alerts.landing_deadline({alerts.LANDING_DEADLINE_ENV: " "}).interval == timedelta(minutes=30)


@pytest.mark.parametrize("value", ["ten", "-5", "nan", "inf"])
def test_an_invalid_setting_fails_the_parse_naming_the_variable(value):
    with pytest.raises(ValueError, match=alerts.LANDING_DEADLINE_ENV):
        alerts.landing_deadline({alerts.LANDING_DEADLINE_ENV: value})


def test_batch_deadline_is_the_day_end_plus_lateness_plus_grace_from_the_logical_date():
    alert = alerts.batch_deadline(10, {})
    assert alert.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    # logical date of a daily CronDataIntervalTimetable run = start of its day
    assert alert.interval == timedelta(days=1, minutes=10) + timedelta(hours=3)
    assert alert.callback.kwargs["what"] == "day not published 3 h 10 min after its end"
    assert alerts.batch_deadline(10, {alerts.BATCH_DEADLINE_ENV: "6"}).interval == timedelta(
        days=1, hours=6, minutes=10
    )
    assert alerts.batch_deadline(10, {alerts.BATCH_DEADLINE_ENV: "0"}) is None


def test_mail_is_configured_by_address_only():
    assert alerts.notifier_kwargs({}) == {}
    assert alerts.notifier_kwargs({alerts.EMAIL_ENV: " a@example.org, b@example.org ,"}) == {
        "email": ["a@example.org", "b@example.org"],
        "from_email": None,
        "smtp_conn_id": "smtp_default",
    }
    env = {alerts.EMAIL_ENV: "a@example.org", alerts.EMAIL_FROM_ENV: "streamlab@example.org"}
    kwargs = alerts.landing_deadline(env).callback.kwargs
    assert kwargs["email"] == ["a@example.org"] and kwargs["from_email"] == "streamlab@example.org"


# ---- the callback ----------------------------------------------------------------------------


def test_the_line_names_dag_run_deadline_and_how_late():
    now = DEADLINE + timedelta(minutes=2, seconds=5)
    line = alerts.describe("landing run not finished 30 min after it was queued", context(), now)
    assert line == (
        "DEADLINE MISSED: DAG kafka_to_hdfs_landing run manual__held (manual, state queued): landing run "
        "not finished 30 min after it was queued; deadline 2026-03-01T10:30:00Z, 2 min 5 s late at "
        "2026-03-01T10:32:05Z; queued at 2026-03-01T10:00:00Z"
    )
    # the deadline as a string too (whatever the trigger's kwargs serialization gives back)
    ctx = context()
    ctx["deadline"]["deadline_time"] = DEADLINE.isoformat()
    assert "deadline 2026-03-01T10:30:00Z, 2 min 5 s late" in alerts.describe("x", ctx, now)
    assert "lateness unknown" in alerts.describe("x", {}, now)


def run_as_the_triggerer(kwargs: dict) -> list[dict]:
    """Airflow's CallbackTrigger, as the triggerer runs a queued deadline callback."""
    from airflow.triggers.callback import CallbackTrigger

    async def events():
        trigger = CallbackTrigger("streamlab.alerts.deadline_missed", kwargs)
        return [e.payload async for e in trigger.run()]

    return asyncio.run(events())


def test_the_triggerer_runs_the_callback_which_logs_and_returns_the_line(caplog):
    caplog.set_level(logging.INFO, logger="streamlab.alerts")
    alert = alerts.landing_deadline({})
    events = run_as_the_triggerer({**alert.callback.kwargs, "context": context()})
    assert [e["state"] for e in events] == ["running", "success"]
    line = events[-1]["body"]
    assert line.startswith("DEADLINE MISSED: DAG kafka_to_hdfs_landing run manual__held")
    assert "late at" in line
    assert [r.getMessage() for r in caplog.records if r.name == "streamlab.alerts"] == [line]


# ---- mail through the SMTP provider --------------------------------------------------------------


class SmtpSink:
    """Just enough of an SMTP server on loopback: keeps every message it accepts."""

    def __init__(self):
        self.messages: list[dict] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.session, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def session(self, reader, writer):
        def say(text: str):
            writer.write(text.encode() + b"\r\n")

        say("220 sink ESMTP")
        message = {"rcpt": []}
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            cmd = line.split(" ", 1)[0].upper()
            if cmd == "EHLO":
                say("250-sink\r\n250 8BITMIME")
            elif cmd == "MAIL":
                message["from"] = line
                say("250 OK")
            elif cmd == "RCPT":
                message["rcpt"].append(line)
                say("250 OK")
            elif cmd == "DATA":
                say("354 go on")
                body = []
                while (data := (await reader.readline()).decode()) not in (".\r\n", ""):
                    body.append(data)
                message["data"] = "".join(body)
                self.messages.append(message)
                message = {"rcpt": []}
                say("250 OK")
            elif cmd == "QUIT":
                say("221 bye")
                await writer.drain()
                break
            else:
                say("250 OK")
            await writer.drain()
        writer.close()


def smtp_connection(monkeypatch, port: int) -> None:
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {
            "disable_tls": True,
            "disable_ssl": True,
            "from_email": "airflow@example.org",
            "retry_limit": 0,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))


def test_with_an_address_the_alert_is_mailed_through_smtp_default(monkeypatch):
    kwargs = alerts.landing_deadline({alerts.EMAIL_ENV: "oncall@example.org"}).callback.kwargs
    sink = SmtpSink()

    async def main():
        smtp_connection(monkeypatch, await sink.start())
        return await alerts.deadline_missed(**kwargs, context=context())

    line = asyncio.run(main())
    [message] = sink.messages
    assert message["from"] == "MAIL FROM:<airflow@example.org>"  # the connection's from_email
    assert message["rcpt"] == ["RCPT TO:<oncall@example.org>"]
    mail = email.message_from_string(message["data"])
    assert mail["Subject"] == "[streamlab] deadline missed: kafka_to_hdfs_landing manual__held"
    [body] = [p.get_payload(decode=True).decode() for p in mail.walk() if p.get_content_type() == "text/html"]
    assert body == f"<p>{line}</p>"
    assert line.startswith("DEADLINE MISSED")


def test_a_mail_that_cannot_be_sent_fails_the_callback_after_the_line_is_logged(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="streamlab.alerts")
    kwargs = alerts.landing_deadline({alerts.EMAIL_ENV: "oncall@example.org"}).callback.kwargs
    sink = SmtpSink()

    async def port_with_nobody():
        port = await sink.start()
        sink.server.close()
        await sink.server.wait_closed()
        return port

    smtp_connection(monkeypatch, asyncio.run(port_with_nobody()))
    events = run_as_the_triggerer({**kwargs, "context": context()})
    assert events[-1]["state"] == "failed"
    assert any(r.getMessage().startswith("DEADLINE MISSED") for r in caplog.records)


def test_backfill_runs_are_logged_not_mailed(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="streamlab.alerts")
    sent = []

    async def send_mail(*args):
        sent.append(args)

    monkeypatch.setattr(alerts, "send_mail", send_mail)
    kwargs = alerts.batch_deadline(10, {alerts.EMAIL_ENV: "oncall@example.org"}).callback.kwargs
    asyncio.run(alerts.deadline_missed(**kwargs, context=context("backfill", "backfill__2025-01-01")))
    assert sent == []
    asyncio.run(alerts.deadline_missed(**kwargs, context=context("scheduled", "scheduled__2025-01-01")))
    assert len(sent) == 1
    assert sum("DEADLINE MISSED" in r.getMessage() for r in caplog.records) == 2

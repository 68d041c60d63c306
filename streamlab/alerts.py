"""Freshness alerts: Airflow 3 deadline alerts of the landing and of the daily batch.

The DAG files only call `landing_deadline()` and `batch_deadline()`; what fires, when, and who
is told is decided here, from the environment of the DAG processor (read at parse):

    STREAMLAB_LANDING_DEADLINE_MINUTES  a landing run not finished this long after it was queued
                                        (default 30, three schedule intervals of 10 minutes)
    STREAMLAB_BATCH_DEADLINE_HOURS      grace after a day's end plus the lateness the batch waits
                                        for, by which the day must be published (default 3)
    STREAMLAB_ALERT_EMAIL               comma-separated addresses: also mail each alert through
                                        the Airflow connection `smtp_default` (SMTP provider)
    STREAMLAB_ALERT_EMAIL_FROM          the sender (else the connection's `from_email` extra)

A value of 0 declares no deadline. The scheduler compares the deadlines with the clock in every
loop (about once a second) and hands a missed one to the triggerer, which awaits
`deadline_missed`: it logs one line (DAG, run, deadline, how late) to the triggerer's log and,
when an address is set, sends the mail. A fired deadline changes nothing in the run itself.

Airflow drops a run's deadline when the run *succeeds* before it; a run that failed, or is still
queued or running, fires once its deadline passes. The batch's deadline counts from the run's
logical date, the start of its day for the daily cron runs (`CronDataIntervalTimetable`): a
backfill of an old day is past its deadline when it is created and fires at once, so backfill
runs are logged but not mailed. A manual run without a logical date (`airflow dags trigger`)
has none, so the batch declares no deadline for it.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

LANDING_DEADLINE_ENV = "STREAMLAB_LANDING_DEADLINE_MINUTES"
BATCH_DEADLINE_ENV = "STREAMLAB_BATCH_DEADLINE_HOURS"
EMAIL_ENV = "STREAMLAB_ALERT_EMAIL"
EMAIL_FROM_ENV = "STREAMLAB_ALERT_EMAIL_FROM"
SMTP_CONN_ID = "smtp_default"

DEFAULT_LANDING_MINUTES = 30.0
DEFAULT_BATCH_HOURS = 3.0

MARKER = "DEADLINE MISSED"  # every alert line starts with it: grep the triggerer's log for it

log = logging.getLogger("streamlab.alerts")


# ---- declaring the deadlines (DAG parse time) -------------------------------------------------


def env_interval(
    name: str, default: float, unit: str, environ: Mapping[str, str] | None = None
) -> timedelta | None:
    """`name` from the environment as a duration in `unit` ("minutes" or "hours"); None for 0.

    An invalid value fails the DAG's parse, naming the variable (an import error in the UI).
    """
    environ = os.environ if environ is None else environ
    raw = (environ.get(name) or "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of {unit}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name}={raw!r}: give a number of {unit} >= 0 (0: no deadline)")
    return timedelta(**{unit: value}) if value else None


def notifier_kwargs(environ: Mapping[str, str] | None = None) -> dict:
    """The callback's mail settings: none unless STREAMLAB_ALERT_EMAIL names an address."""
    environ = os.environ if environ is None else environ
    to = [a.strip() for a in (environ.get(EMAIL_ENV) or "").split(",") if a.strip()]
    if not to:
        return {}
    return {
        "email": to,
        "from_email": (environ.get(EMAIL_FROM_ENV) or "").strip() or None,
        "smtp_conn_id": SMTP_CONN_ID,
    }


def _alert(name: str, reference, interval: timedelta, what: str, environ) -> DeadlineAlert:
    return DeadlineAlert(
        reference=reference,
        interval=interval,
        callback=AsyncCallback(deadline_missed, kwargs={"what": what, **notifier_kwargs(environ)}),
        name=name,
    )


def _human(td: timedelta) -> str:
    """`3 h 10 min`, `45 s`: whole seconds, largest units first."""
    s = max(0, int(td.total_seconds()))
    parts = [f"{s // 3600} h" if s >= 3600 else "", f"{s % 3600 // 60} min" if s % 3600 >= 60 else ""]
    parts.append(f"{s % 60} s" if s % 60 or s == 0 else "")
    return " ".join(p for p in parts if p)


def landing_deadline(environ: Mapping[str, str] | None = None) -> DeadlineAlert | None:
    """A landing run not finished STREAMLAB_LANDING_DEADLINE_MINUTES after it was queued."""
    interval = env_interval(LANDING_DEADLINE_ENV, DEFAULT_LANDING_MINUTES, "minutes", environ)
    if interval is None:
        return None
    return _alert(
        "landing freshness",
        DeadlineReference.DAGRUN_QUEUED_AT,
        interval,
        f"landing run not finished {_human(interval)} after it was queued",
        environ,
    )


def batch_deadline(lateness_minutes: int, environ: Mapping[str, str] | None = None) -> DeadlineAlert | None:
    """A day not published by its end + `lateness_minutes` + STREAMLAB_BATCH_DEADLINE_HOURS.

    The reference is the run's logical date: the start of the day for the daily cron runs.
    """
    grace = env_interval(BATCH_DEADLINE_ENV, DEFAULT_BATCH_HOURS, "hours", environ)
    if grace is None:
        return None
    after_end = timedelta(minutes=lateness_minutes) + grace
    return _alert(
        "daily batch published",
        DeadlineReference.DAGRUN_LOGICAL_DATE,
        timedelta(days=1) + after_end,
        f"day not published {_human(after_end)} after its end",
        environ,
    )


# ---- the callback (runs in the triggerer) -----------------------------------------------------


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _iso(value: datetime | None) -> str:
    if value is None:
        return "?"
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def describe(what: str, context: Mapping | None, now: datetime) -> str:
    """The alert's one line: which DAG and run, the deadline, how late, the run's state."""
    context = context or {}
    run = context.get("dag_run") or {}
    deadline = _as_datetime((context.get("deadline") or {}).get("deadline_time"))
    late = f"{_human(now - deadline)} late" if deadline is not None else "lateness unknown"
    logical = run.get("logical_date")
    return (
        f"{MARKER}: DAG {run.get('dag_id', '?')} run {run.get('dag_run_id', '?')} "
        f"({run.get('run_type', '?')}, state {run.get('state', '?')}): {what}; "
        f"deadline {_iso(deadline)}, {late} at {_iso(now)}; queued at "
        f"{_iso(_as_datetime(run.get('queued_at')))}"
        + (f", logical date {_iso(_as_datetime(logical))}" if logical else "")
    )


async def deadline_missed(
    what: str,
    email: list[str] | None = None,
    from_email: str | None = None,
    smtp_conn_id: str = SMTP_CONN_ID,
    context: Mapping | None = None,
) -> str:
    """Log the missed deadline, mail it if addresses are configured; the line is the result.

    Airflow keeps the returned line as the callback's output (table `callback`); an exception
    (the mail could not be sent) marks the callback failed, after the line was logged.
    """
    line = describe(what, context, datetime.now(timezone.utc))
    log.warning("%s", line)
    run = (context or {}).get("dag_run") or {}
    if email and run.get("run_type") == "backfill":
        log.info("no mail for a backfill run: it re-runs a past day, after its deadline by design")
    elif email:
        await send_mail(line, email, from_email, smtp_conn_id, run)
        log.info("alert mailed to %s through connection %s", ", ".join(email), smtp_conn_id)
    return line


async def send_mail(
    line: str, to: list[str], from_email: str | None, smtp_conn_id: str, run: Mapping
) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        to=to,
        from_email=from_email,
        smtp_conn_id=smtp_conn_id,
        subject=f"[streamlab] deadline missed: {run.get('dag_id', '?')} {run.get('dag_run_id', '?')}",
        html_content=f"<p>{html.escape(line)}</p>",
    )
    # Subject and body are final: nothing is rendered from the (small) deadline context.
    await notifier.async_notify({})

"""A minimal client of Airflow 3's REST API (`/api/v2`), authenticated as the stack's admin."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from streamlab.config import StackConfig


class AirflowClient:
    def __init__(self, cfg: StackConfig, timeout: float = 30):
        self.base = cfg.airflow_url
        self.timeout = timeout
        user, password = cfg.admin_credentials()
        token = self._call(
            "POST", "/auth/token", {"username": user, "password": password}, auth=False
        )
        self.token = token["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read() or b"null")

    def get(self, path: str):
        return self._call("GET", f"/api/v2{path}")

    def post(self, path: str, body: dict):
        return self._call("POST", f"/api/v2{path}", body)

    def patch(self, path: str, body: dict):
        return self._call("PATCH", f"/api/v2{path}", body)

    def dag(self, dag_id: str) -> dict | None:
        try:
            return self.get(f"/dags/{dag_id}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def runs(self, dag_id: str, **params) -> list[dict]:
        query = "&".join(f"{k}={v}" for k, v in {"order_by": "-start_date", **params}.items())
        return self.get(f"/dags/{dag_id}/dagRuns?{query}")["dag_runs"]

    def trigger(self, dag_id: str, conf: dict | None = None) -> dict:
        return self.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})

"""The Streamlab page in the Airflow UI: a nav entry "Streamlab" and the app behind it.

The app (streamlab/ui.py) is mounted by the api-server at /streamlab; the nav entry shows it
inside the UI at /plugin/streamlab. `GET /api/v2/plugins` lists this plugin once loaded.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from streamlab.ui import create_app


class StreamlabPlugin(AirflowPlugin):
    name = "streamlab"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/streamlab", "name": "Streamlab"}]
    external_views = [
        {
            "name": "Streamlab",
            "href": "/streamlab/",
            "destination": "nav",
            "url_route": "streamlab",
            "nav_top_level": True,
        }
    ]

"""Watch-live and replay screens: owned by webreplay.

`ROUTES` are Starlette routes with their full paths, under `/recordings` and `/sessions/live`
(web/app.py adds them as they are). Until webreplay's module lands, this placeholder keeps
the app's contract.
"""
from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []

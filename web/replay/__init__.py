"""Watch and replay in the browser: what the console's recordings pages are made of.

`cast` turns a terminal recording into the asciicast v2 lines the browser's player reads;
`feed` turns a live recording's events into Server-Sent Events; `views` turns recordings,
live sessions, timelines and verification results into the plain data the templates show;
`source` is the only part that talks to the control plane (as the signed-in person).
The routes are in `web/recordings.py`. Nothing here parses recordings itself: events come
from `recorder/` (through `cli.remote_recordings`, the RecordingService client the CLI uses).
"""

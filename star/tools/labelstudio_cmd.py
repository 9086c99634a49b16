"""The commands around a live Label Studio: `star labelstudio` (STAR drives the project's
rounds) and `star serve` (STAR as the project's ML backend).

Both take the Label Studio key from LABEL_STUDIO_API_KEY and `star serve` its password from
STAR_SERVE_PASSWORD: a secret on a command line can be read by every user of the machine.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from star.annotate.labelstudio import connect, linked, watch
from star.errors import ConfigError
from star.progress import log
from star.tools.labels import open_run


def label_live(run: Path, url: str, project: int | None, create: bool, poll: float) -> str:
    """Drive the run's rounds through a Label Studio project until the budget is spent or
    Ctrl+C; the closing summary."""
    live = connect(open_run(run), url, project, create)
    print(f"{run}: labeling in project {live.project}, {live.client.url}/projects/{live.project}/ "
          "(Ctrl+C stops; the same command goes on later)", flush=True)
    return watch(live, poll)


def serve(run: Path, host: str, port: int, user: str | None) -> None:
    """Serve the run's model to Label Studio until Ctrl+C."""
    from star.annotate.backend import PASSWORD, Backend, Model  # torch: loaded only here

    password = os.environ.get(PASSWORD) if user is not None else None
    if user is not None and not password:
        raise ConfigError(f"--user {user} needs its password in {PASSWORD} (never on the command line)")
    folder = open_run(run)
    live = linked(folder)  # checked before the model loads: a bad key fails at once
    backend = Backend(folder, Model(folder), live, host, port, user, password)
    log(f"STAR ML backend of {run} ({backend.model.version}) at {backend.origin}: add it in Label "
        "Studio under Settings > Model > Connect Model" + (", Basic Auth on" if user else ""))
    log(f"journaling and training with project {live.project} at {live.client.url}" if live else
        "not linked to a Label Studio project (star labelstudio links one, and with "
        "LABEL_STUDIO_API_KEY set star serve journals its annotations): Start training trains "
        "on the journal's labels")
    with suppress(KeyboardInterrupt):
        backend.serve_forever()

"""The Prefect application over the `bellm` library: `bellm_app.flows` (the flows, and the `bellm run` and
`bellm ablate` commands, registered through the `bellm.commands` entry points) and `bellm_app.tasks`.

Their code lives in the repository's top-level `flows/` and `tasks/` folders (Prefect deployments name them
by path: deploy/prefect.yaml); the wheel installs them under this one package, so it puts no generic
`flows`/`tasks` names into site-packages. In a source checkout those folders are found from here.
"""

from pathlib import Path

_here = Path(__file__).resolve().parent
if not (_here / "flows").is_dir():  # a source checkout: bellm_app.flows is <repo>/flows
    __path__.append(str(_here.parent))  # noqa: F821 - the package's own search path

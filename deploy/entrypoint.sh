#!/bin/sh
# Container entrypoint: `bellm ARGS`, unless ARGS starts with a program on PATH (prefect, python,
# torchrun, dask, ray, sh ...), which then runs as is. Work pools pass their own command
# (`prefect flow-run execute`), sweep workers `dask worker tcp://...`, users `train --profile quick`.
set -e
if [ "$#" -gt 0 ]; then
    case "$(command -v -- "$1" 2>/dev/null)" in
        /*) exec "$@" ;;
    esac
fi
exec bellm "$@"

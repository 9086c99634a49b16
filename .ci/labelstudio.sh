#!/usr/bin/env bash
# Label Studio for the tests that start a real server (tests/labelstudio.py), in its own venv
# (.venv-ls) so that its pinned dependencies never meet ours; STAR talks to it through the SDK
# of our `labelstudio` extra. Idempotent: a no-op once the pinned version is in place.
# Run the tests with STAR_REQUIRE_LABEL_STUDIO=1 so a missing server fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.23.2  # the version tests/data/labelstudio was recorded with
test -x .venv-ls/bin/python || "${PYTHON:-python3}" -m venv .venv-ls
installed=$(.venv-ls/bin/python -m pip show label-studio 2>/dev/null || true)
if ! grep -qx "Version: $VERSION" <<<"$installed"; then
    .venv-ls/bin/python -m pip install -q --upgrade pip
    .venv-ls/bin/python -m pip install -q "label-studio==$VERSION"
fi

#!/usr/bin/env bash
# Set up (with test extras) and run every check: ruff, the rule examples, the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check diagnose tests bench lab
.venv/bin/diagnose rules test > /tmp/diagnose-rules-test.txt || { cat /tmp/diagnose-rules-test.txt; exit 1; }
tail -n 1 /tmp/diagnose-rules-test.txt
.venv/bin/python -m pytest -q "$@"

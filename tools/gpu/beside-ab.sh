#!/usr/bin/env bash
# Issue 17: background stages vs synchronous, A/B in one process (tools/gpu/beside-ab.py).
# Budget: ~2.5 min (one compile, six runs of 16 windows).
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/beside_ab_out}; mkdir -p "$OUT"
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
timeout 480 python3 tools/gpu/beside-ab.py "$OUT/beside_ab.json" 2>&1 | grep -v "^\s*$" | tail -150

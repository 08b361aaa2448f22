# Two commands: `make test` and `make demo`. Both build .venv on first use (tools/setup_venv.sh;
# idempotent, nothing is reinstalled on a second run) and keep all DDS traffic on this host.
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python

# Loopback-only Fast DDS and a private domain for every process started from here.
export FASTDDS_DEFAULT_PROFILES_FILE := $(ROOT)/config/fastdds_local.xml
export ROS_DOMAIN_ID ?= 87
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test demo colcon-check clean

setup:
	@$(ROOT)/tools/setup_venv.sh

test: setup
	@$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	@$(PY) -m vggt_ros.offline.demo

# Robot install path: a colcon workspace build of this repo with the venv's ROS wheels.
colcon-check: setup
	@$(ROOT)/tools/colcon_check.sh

clean:
	rm -rf $(VENV) build install log .demo

"""The lifecycle part of /diagnostics (topics/lifecycle_status.py), without rclpy."""
import math

from vggt_ros.topics.lifecycle_status import StartupRecord, idle_status, lifecycle_values
from vggt_ros.topics.messages import DIAGNOSTIC_ERROR, DIAGNOSTIC_OK


def test_each_idle_state_says_what_the_node_waits_for():
    record = StartupRecord()
    assert idle_status("unconfigured", record) == (DIAGNOSTIC_OK,
                                                   "unconfigured: waiting for configure")
    assert idle_status("configuring", record)[1].startswith("configuring: loading the model")
    assert idle_status("inactive", record)[1].endswith("waiting for activate")


def test_a_failed_transition_is_an_error_until_one_succeeds():
    record = StartupRecord(last_error="configure failed: /m.pt: checkpoint file not found")
    level, message = idle_status("unconfigured", record)
    assert level == DIAGNOSTIC_ERROR
    assert message == "unconfigured: configure failed: /m.pt: checkpoint file not found"


def test_values_carry_state_and_start_up_times():
    values = lifecycle_values("inactive", StartupRecord(configure_s=12.5, model_load_s=2.5,
                                                        warmup_s=10.0, warmup="warm-up 10.0 s"))
    assert values["lifecycle_state"] == "inactive" and values["startup.configure_s"] == 12.5
    assert values["startup.warmup"] == "warm-up 10.0 s" and values["lifecycle.last_error"] == ""
    assert math.isnan(lifecycle_values("unconfigured", StartupRecord())["startup.warmup_s"])

"""Trajectory and map evaluation against ground truth (no rclpy, no torch)."""

"""The frame-in, odom-out core (no rclpy, no torch): keyframe windows, chaining, map fusion.

Import the modules directly (``vggt_ros.pipeline.pipeline`` and friends): keeping this file
empty lets ``types`` be imported without pulling in SciPy-based geometry.
"""

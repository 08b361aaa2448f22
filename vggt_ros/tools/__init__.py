"""Command-line tools that need no ROS runtime (``vggt_map``)."""

"""ROS 2 glue (the only place rclpy is imported): message conversions, parameters, the node."""

"""What vggt_ros publishes, defined once for the live node and for the mapper's output bag.

``table`` names every output topic with its type and QoS, ``messages`` builds each message as
plain data (nested dicts in the ROS field layout, no rclpy, no rosbags), ``window_outputs``
says which messages a processed window produces and in which order, and ``diagnostics`` turns
the pipeline's state into the ``/diagnostics`` status. The node converts the plain data to
rclpy messages (``vggt_ros.nodes.rclpy_messages``) and the bag writer serialises it with
rosbags (``vggt_ros.io.bag_messages.build_message``): the two can no longer drift apart.
"""

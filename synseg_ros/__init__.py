"""synseg_ros: the ROS 2 adapter around synseg_core (node, message conversion, diagnostics)."""

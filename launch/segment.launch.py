"""Start the synseg segmentation node.

    ros2 launch synseg_ros segment.launch.py image:=/camera/color/image_raw
    ros2 launch synseg_ros segment.launch.py params_file:=/path/to/my.yaml namespace:=robot1 backend:=onnxruntime
    ros2 launch synseg_ros segment.launch.py cameras:=front,rear,left   # one node, three cameras, one model

Runs exactly what `ros2 run synseg_ros synseg_node --ros-args --params-file <share>/config/synseg.yaml` runs:
the same executable and parameter file. The defaults live in that file only; `checkpoint`, `backend`,
`query_topic` and `cameras` override it only when given (empty = keep the file's value). `cameras` is a comma-
separated list of names: each camera reads `<name>/image` and publishes `<name>/labels`, ... (remap those topics
to your drivers'); `image` remaps the input of the single-camera node.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "synseg_ros"
EXECUTABLE = "synseg_node"
NODE_NAME = "synseg"
OVERRIDABLE = ("checkpoint", "backend", "query_topic")  # launch arguments that may override the parameter file


def _node(context, *args, **kwargs):
    """The node action, with overrides only for the arguments that were actually given."""
    image = LaunchConfiguration("image").perform(context)
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDABLE}
    overrides = {name: value for name, value in overrides.items() if value}
    cameras = LaunchConfiguration("cameras").perform(context)
    if cameras.strip():
        # Empty names are kept, so the node's configure reports them (e.g. "front,,rear").
        overrides["cameras"] = [name.strip() for name in cameras.split(",")]
    return [Node(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME, namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")] + ([overrides] if overrides else []),
        remappings=[("image", image), ("image/compressed", image + "/compressed")],
        output="screen", emulate_tty=True)]


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "synseg.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameter YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic (remaps 'image')"),
        DeclareLaunchArgument("query_topic", default_value="", description="query topic ('' = from params_file)"),
        DeclareLaunchArgument("checkpoint", default_value="", description="model ('' = from params_file)"),
        DeclareLaunchArgument("backend", default_value="", description="auto|torch|onnxruntime|tensorrt "
                                                                        "('' = from params_file)"),
        DeclareLaunchArgument("cameras", default_value="", description="comma-separated camera names, e.g. "
                              "front,rear,left: one node serves them all ('' = from params_file)"),
        OpaqueFunction(function=_node),
    ])

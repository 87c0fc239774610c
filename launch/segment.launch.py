"""Start the synseg segmentation node.

    ros2 launch synseg_ros segment.launch.py image:=/camera/color/image_raw
    ros2 launch synseg_ros segment.launch.py params_file:=/path/to/my.yaml namespace:=robot1 backend:=onnxruntime
    ros2 launch synseg_ros segment.launch.py cameras:=front,rear,left   # one node, three cameras, one model
    ros2 launch synseg_ros segment.launch.py device:=cpu precision:=int8 categories:="person, chair" log_level:=debug

Runs exactly what `ros2 run synseg_ros synseg_node --ros-args --params-file <share>/config/synseg.yaml` runs:
the same executable and parameter file. The defaults live in that file only; `checkpoint`, `backend`, `device`,
`precision`, `categories`, `query_topic`, `cameras` and `use_sim_time` override it only when given (empty = keep
the file's value). `cameras` is a comma-separated list of names: each camera reads `<name>/image` and publishes
`<name>/segmentation`, ... (remap those topics to your drivers'); `image` remaps the input of the single-camera node.

`dds_profile` (default: the shipped config/fastdds_large_frames.xml; '' = none) is the node process's
FASTDDS_DEFAULT_PROFILES_FILE: a large shared-memory segment, so its camera-size outputs reach every local
subscriber. Peers with default settings keep working with it; the camera driver's process needs the same profile
for the node to receive camera-size frames sent best effort (README: "Camera images over DDS").
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "synseg_ros"
EXECUTABLE = "synseg_node"
NODE_NAME = "synseg"
# Launch arguments that override the parameter file only when given.
OVERRIDABLE = ("checkpoint", "backend", "device", "precision", "categories", "query_topic")
DDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def _node(context, *args, **kwargs):
    """The node action, with overrides only for the arguments that were actually given."""
    image = LaunchConfiguration("image").perform(context)
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDABLE}
    overrides = {name: value for name, value in overrides.items() if value}
    cameras = LaunchConfiguration("cameras").perform(context)
    if cameras.strip():
        # Empty names are kept, so the node's configure reports them (e.g. "front,,rear").
        overrides["cameras"] = [name.strip() for name in cameras.split(",")]
    sim_time = LaunchConfiguration("use_sim_time").perform(context).strip().lower()
    if sim_time:
        overrides["use_sim_time"] = sim_time in ("true", "1", "yes")
    profile = LaunchConfiguration("dds_profile").perform(context)
    return [Node(
        package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME, namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")] + ([overrides] if overrides else []),
        remappings=[("image", image), ("image/compressed", image + "/compressed")],
        ros_arguments=["--log-level", LaunchConfiguration("log_level").perform(context)],
        additional_env={DDS_PROFILE_VARIABLE: profile} if profile else None,
        output="screen", emulate_tty=True)]


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "synseg.yaml"])
    default_profile = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "fastdds_large_frames.xml"])
    from_file = "('' = from params_file)"
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameter YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic (remaps 'image')"),
        DeclareLaunchArgument("query_topic", default_value="", description=f"query topic {from_file}"),
        DeclareLaunchArgument("checkpoint", default_value="", description=f"model {from_file}"),
        DeclareLaunchArgument("backend", default_value="", description=f"auto|torch|onnxruntime|tensorrt {from_file}"),
        DeclareLaunchArgument("device", default_value="", description=f"cpu|cuda|cuda:N {from_file}"),
        DeclareLaunchArgument("precision", default_value="", description=f"fp32|fp16|int8|bf16 {from_file}"),
        DeclareLaunchArgument("categories", default_value="",
                              description=f"default query, comma-separated {from_file}"),
        DeclareLaunchArgument("cameras", default_value="", description="comma-separated camera names, e.g. "
                              f"front,rear,left: one node serves them all {from_file}"),
        DeclareLaunchArgument("use_sim_time", default_value="", description=f"true|false {from_file}"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug|info|warn|error|fatal"),
        DeclareLaunchArgument("dds_profile", default_value=default_profile,
                              description="the node process's Fast DDS profile (FASTDDS_DEFAULT_PROFILES_FILE; "
                              "'' = none): a large shared-memory segment for camera-size images"),
        OpaqueFunction(function=_node),
    ])

"""Launch trajectory_estimator and view_predictor in one process (`rap-ros up`), so they
share one model in memory.

    ros2 launch rap_ros rap_ros.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info plan:=/plan use_sim_time:=true

No node name is set here: a name remapping would rename both nodes of the process. The
parameters file addresses them as trajectory_estimator and view_predictor.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("rap_ros"), "config", "rap_ros.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=config,
                              description="ROS 2 parameters file of both nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag playback, simulation)"),
        DeclareLaunchArgument("image", default_value="image",
                              description="input image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera info topic (optional input)"),
        DeclareLaunchArgument("plan", default_value="plan",
                              description="planned path topic (nav_msgs/Path)"),
        DeclareLaunchArgument("map_points", default_value="map_points",
                              description="the estimator's local map, the predictor's warp "
                                          "depth (sensor_msgs/PointCloud2)"),
        Node(
            package="rap_ros",
            executable="rap-ros",
            arguments=["up"],  # launch_ros appends --ros-args ... which `up` passes on
            output="screen",
            parameters=[LaunchConfiguration("params_file"),
                        {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"),
                                                        value_type=bool)}],
            remappings=[("image", LaunchConfiguration("image")),
                        ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
                        ("camera_info", LaunchConfiguration("camera_info")),
                        ("plan", LaunchConfiguration("plan")),
                        ("map_points", LaunchConfiguration("map_points"))],
        ),
    ])

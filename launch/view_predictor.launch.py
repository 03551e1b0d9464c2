"""Launch view_predictor alone.

    ros2 launch rap_ros view_predictor.launch.py image:=/camera/image_raw plan:=/plan
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("rap_ros"), "config",
                          "view_predictor.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=config,
                              description="ROS 2 parameters file of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag playback, simulation)"),
        DeclareLaunchArgument("image", default_value="image",
                              description="source image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera info topic (optional input)"),
        DeclareLaunchArgument("plan", default_value="plan",
                              description="planned path topic (nav_msgs/Path)"),
        DeclareLaunchArgument("map_points", default_value="map_points",
                              description="scene points for the warp's depth "
                                          "(sensor_msgs/PointCloud2, optional input)"),
        Node(
            package="rap_ros",
            executable="view_predictor",
            name="view_predictor",
            output="screen",
            parameters=[LaunchConfiguration("params_file"),
                        {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"),
                                                        value_type=bool)}],
            remappings=[("image", LaunchConfiguration("image")),
                        ("camera_info", LaunchConfiguration("camera_info")),
                        ("plan", LaunchConfiguration("plan")),
                        ("map_points", LaunchConfiguration("map_points"))],
        ),
    ])

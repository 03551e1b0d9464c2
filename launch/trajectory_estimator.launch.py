"""Launch trajectory_estimator alone.

    ros2 launch rap_ros trajectory_estimator.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info use_sim_time:=true
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
                          "trajectory_estimator.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=config,
                              description="ROS 2 parameters file of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (bag playback, simulation)"),
        DeclareLaunchArgument("image", default_value="image",
                              description="input image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera info topic (optional input)"),
        DeclareLaunchArgument("map_points", default_value="map_points",
                              description="local map output (sensor_msgs/PointCloud2)"),
        Node(
            package="rap_ros",
            executable="trajectory_estimator",
            name="trajectory_estimator",
            output="screen",
            parameters=[LaunchConfiguration("params_file"),
                        {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"),
                                                        value_type=bool)}],
            remappings=[("image", LaunchConfiguration("image")),
                        ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
                        ("camera_info", LaunchConfiguration("camera_info")),
                        ("map_points", LaunchConfiguration("map_points"))],
        ),
    ])

"""Replay a rosbag2 recording into both nodes on simulated time (a ROS 2 install).

    ros2 launch rap_ros replay_bag.launch.py bag:=/path/to/bag \
        image:=/camera/image_raw camera_info:=/camera/camera_info

`ros2 bag play --clock` publishes /clock and the nodes run with use_sim_time, so header
stamps, TF and /clock agree: RViz (rviz/rap_ros.rviz) and tf2 lookups work as on the robot.
The defaults match the bags of `rap-ros synth --bag`. Without a ROS install,
`rap-ros evaluate BAG --live` and `rap-ros demo` replay bags with their own player.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    share = get_package_share_directory("rap_ros")
    nodes = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "rap_ros.launch.py")),
        launch_arguments={"use_sim_time": "true",
                          "image": LaunchConfiguration("image"),
                          "camera_info": LaunchConfiguration("camera_info")}.items())
    player = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock",
             "--rate", LaunchConfiguration("rate")],
        output="screen")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder or file to replay"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="image topic in the bag"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="camera info topic in the bag"),
        nodes,
        player,
    ])

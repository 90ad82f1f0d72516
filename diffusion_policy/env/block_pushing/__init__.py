"""Multimodal block pushing (two blocks, two targets) on pybullet with an xArm pusher."""

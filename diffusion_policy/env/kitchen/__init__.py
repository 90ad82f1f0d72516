"""Franka Kitchen (7 tasks) on gymnasium-robotics, with the original 60-d observation / 9-d action interface."""

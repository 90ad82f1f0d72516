"""Push-T tasks (keypoint and image observations) built on gym-pusht."""

"""Hypothesis strategies shared by the pose-parser fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=20)
        | st.dictionaries(
            st.sampled_from(
                ["width", "height", "frames", "people", "pose_keypoints_2d", "canvas_width", "canvas_height"]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=60,
)
